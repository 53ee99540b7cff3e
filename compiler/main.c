/*
 * main.c - the polyc command: parse the options, then run the pipeline
 * parse → build graph → classify → plan → emit → clang, one call each.
 * Exit status: 0 success, 1 bad input or a failing back end, 2 usage.
 */
#include "polyc.h"

#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef POLYC_INCLUDE_DIR
#define POLYC_INCLUDE_DIR "/usr/local/include/polyc"
#endif
#ifndef POLYC_LIB_DIR
#define POLYC_LIB_DIR "/usr/local/lib"
#endif
#define RUNTIME_PIC "libpolyattn_pic.a"

typedef enum Action {
	ACT_OBJECT,              /* -c: an object file (default) */
	ACT_C,                   /* -S or --emit=c: the generated C */
	ACT_HEADER,              /* --emit=h: the header for callers */
	ACT_ASM,                 /* --emit=asm: what clang makes of the C */
	ACT_LLVM,                /* --emit=llvm: LLVM IR, as text */
	ACT_SHARED,              /* --emit=so: a shared object to dlopen */
	ACT_EXPLAIN,             /* --explain: graph, class, plan, cost */
} Action;

/* Everything the command line says. */
typedef struct Options {
	Action action;
	const char *input, *output, *depfile;
	bool md;                 /* -MD: write a dependency file */
	bool mp;                 /* -MP: with a phony target for the input */
	const char *defs[256];   /* -D key=value, in order */
	int ndefs;
	CcOptions cc;
	const char *extra[64];
} Options;

/* A parsed file with its graphs and plans, what the emitters print. */
typedef struct Unit {
	Program *prog;
	Graph graph[PC_MAX_KERNELS];
	Plan plan[PC_MAX_KERNELS];
	const char *src_path;
} Unit;

static const char usage_text[] =
"usage: polyc [options] FILE.poly\n"
"\n"
"Compiles the poly-attention kernels of FILE.poly ('-': standard input).\n"
"\n"
"  -c                 write an object file (the default)\n"
"  -S, --emit=c       write the generated C\n"
"  --emit=h           write the header that declares the kernels\n"
"  --emit=obj         the same as -c\n"
"  --emit=asm         write the assembly clang makes of the C\n"
"  --emit=llvm        write the LLVM IR (text) clang makes of the C\n"
"  --emit=so          write a shared object holding the kernels, the\n"
"                     runtime and OpenMP (for dlopen, ctypes)\n"
"  --explain          print each kernel's graph, class, plan and cost\n"
"  -o FILE            output file ('-' for standard output); default:\n"
"                     FILE with .o, .c, .h, .s, .ll or .so in place of .poly\n"
"                     (standard output when FILE is '-')\n"
"  -D KEY=VALUE       override a setting in every kernel\n"
"  -D KERNEL.KEY=VALUE  override a setting in one kernel\n"
"  -O0 -O1 -O2 -O3 -Os  optimization level for clang (default -O3)\n"
"  -march=CPU         target CPU for clang\n"
"  -Xcc FLAG          pass FLAG to clang\n"
"  --cc=PATH          the C compiler (default $POLYC_CC, else clang)\n"
"  -MD                write a make dependency file (FILE.d, or -MF)\n"
"  -MF FILE           where -MD writes the dependency file\n"
"  -MP                add a phony target for the input to it\n"
"  --help             print this help\n"
"  --version          print the version\n"
"\n"
"Exit status: 0 success, 1 bad input or failing C compiler, 2 usage.\n";

/* usage_error: report a command-line mistake and exit with 2. */
static void usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "polyc: error: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(run 'polyc --help' for usage)\n");
	exit(2);
}

/* installed_dir: the directory <exe>/../rel in buf (PATH_MAX + 32
 * bytes) when it holds file (an installed polyc), else NULL. */
static const char *installed_dir(char *buf, const char *rel, const char *file)
{
	ssize_t n = readlink("/proc/self/exe", buf, PATH_MAX);
	if (n <= 0)
		return NULL;
	buf[n] = 0;
	char *dir = dirname(buf);
	memmove(buf, dir, strlen(dir) + 1);
	strcat(buf, "/../");
	strcat(buf, rel);
	char probe[2 * PATH_MAX];
	snprintf(probe, sizeof probe, "%s/%s", buf, file);
	return access(probe, R_OK) == 0 ? buf : NULL;
}

/* include_dir: $POLYC_INCLUDE_DIR, else <exe>/../include/polyc when it
 * holds polyattn.h, else the build-time default. */
static const char *include_dir(void)
{
	static char buf[PATH_MAX + 32];
	if (getenv("POLYC_INCLUDE_DIR"))
		return getenv("POLYC_INCLUDE_DIR");
	const char *dir = installed_dir(buf, "include/polyc", "polyattn.h");
	return dir ? dir : POLYC_INCLUDE_DIR;
}

/* runtime_pic: the path of libpolyattn_pic.a in $POLYC_LIB_DIR, else in
 * <exe>/../lib when it is there, else in the build-time default. */
static const char *runtime_pic(void)
{
	static char buf[PATH_MAX + 32], path[2 * PATH_MAX];
	const char *dir = getenv("POLYC_LIB_DIR");
	if (!dir)
		dir = installed_dir(buf, "lib", RUNTIME_PIC);
	snprintf(path, sizeof path, "%s/%s", dir ? dir : POLYC_LIB_DIR,
	         RUNTIME_PIC);
	return path;
}

/* parse_emit: the action named by --emit=KIND. */
static Action parse_emit(const char *kind)
{
	if (strcmp(kind, "c") == 0)
		return ACT_C;
	if (strcmp(kind, "h") == 0)
		return ACT_HEADER;
	if (strcmp(kind, "obj") == 0)
		return ACT_OBJECT;
	if (strcmp(kind, "asm") == 0)
		return ACT_ASM;
	if (strcmp(kind, "llvm") == 0)
		return ACT_LLVM;
	if (strcmp(kind, "so") == 0)
		return ACT_SHARED;
	usage_error("unknown --emit kind '%s' (expected c, h, obj, asm, llvm "
	            "or so)", kind);
	return ACT_OBJECT;
}

enum { OPT_EMIT = 256, OPT_EXPLAIN, OPT_HELP, OPT_VERSION, OPT_CC, OPT_MD,
       OPT_MF, OPT_MP, OPT_XCC };

static void output_paths(Options *o);
static void check_paths(const Options *o);

/* parse_options: fill o from argv, exiting with 2 on a usage error. */
static void parse_options(Options *o, int argc, char **argv)
{
	static const struct option longs[] = {
		{"emit", required_argument, 0, OPT_EMIT},
		{"explain", no_argument, 0, OPT_EXPLAIN},
		{"help", no_argument, 0, OPT_HELP},
		{"version", no_argument, 0, OPT_VERSION},
		{"cc", required_argument, 0, OPT_CC},
		{"MD", no_argument, 0, OPT_MD},
		{"MF", required_argument, 0, OPT_MF},
		{"MP", no_argument, 0, OPT_MP},
		{"Xcc", required_argument, 0, OPT_XCC},
		{"march", required_argument, 0, 'm'},
		{0, 0, 0, 0},
	};
	memset(o, 0, sizeof *o);
	o->cc.cc = getenv("POLYC_CC") ? getenv("POLYC_CC") : "clang";
	o->cc.opt = "-O3";
	o->cc.extra = o->extra;
	int c;
	opterr = 0;
	while ((c = getopt_long_only(argc, argv, "cSo:D:O:", longs, NULL)) != -1) {
		switch (c) {
		case 'c': o->action = ACT_OBJECT; break;
		case 'S': o->action = ACT_C; break;
		case 'o': o->output = optarg; break;
		case 'D':
			if (o->ndefs == 256)
				usage_error("too many -D options%s", "");
			o->defs[o->ndefs++] = optarg;
			break;
		case 'O': {
			static char opt[8];
			if (strlen(optarg) != 1 || !strchr("0123s", optarg[0]))
				usage_error("unknown optimization level '-O%s'", optarg);
			snprintf(opt, sizeof opt, "-O%s", optarg);
			o->cc.opt = opt;
			break;
		}
		case 'm': {
			static char march[256];
			snprintf(march, sizeof march, "-march=%s", optarg);
			o->cc.march = march;
			break;
		}
		case OPT_EMIT: o->action = parse_emit(optarg); break;
		case OPT_EXPLAIN: o->action = ACT_EXPLAIN; break;
		case OPT_HELP: fputs(usage_text, stdout); exit(0);
		case OPT_VERSION: printf("polyc %s\n", POLYC_VERSION); exit(0);
		case OPT_CC: o->cc.cc = optarg; break;
		case OPT_MD: o->md = true; break;
		case OPT_MF: o->depfile = optarg; break;
		case OPT_MP: o->mp = true; break;
		case OPT_XCC:
			if (o->cc.nextra == 64)
				usage_error("too many -Xcc options%s", "");
			o->extra[o->cc.nextra++] = optarg;
			break;
		default:
			usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		usage_error(optind == argc ? "no input file%s"
		                           : "more than one input file ('%s')",
		            optind == argc ? "" : argv[optind + 1]);
	o->input = argv[optind];
	output_paths(o);
	check_paths(o);
	o->cc.src_name = strcmp(o->input, "-") == 0 ? "<stdin>" : o->input;
	o->cc.include_dir = include_dir();
	o->cc.runtime_pic = runtime_pic();
}

/* default_output: FILE's basename with .poly replaced by ext; standard
 * output for standard input. */
static const char *default_output(const char *input, const char *ext)
{
	static char buf[PATH_MAX];
	if (strcmp(input, "-") == 0)
		return "-";
	const char *base = strrchr(input, '/') ? strrchr(input, '/') + 1 : input;
	size_t len = strlen(base);
	if (len > 5 && strcmp(base + len - 5, ".poly") == 0)
		len -= 5;
	snprintf(buf, sizeof buf, "%.*s%s", (int)len, base, ext);
	return buf;
}

/* output_paths: the output (standard output for --explain without -o,
 * else FILE with the action's extension) and dependency file (OUTPUT.d
 * unless -MF) that o writes. */
static void output_paths(Options *o)
{
	static const char *const ext[] = {".o", ".c", ".h", ".s", ".ll", ".so", ""};
	static char dep[PATH_MAX + 2], out[PATH_MAX];
	if (!o->output)
		snprintf(out, sizeof out, "%s", o->action == ACT_EXPLAIN ? "-" :
		         default_output(o->input, ext[o->action]));
	o->output = o->output ? o->output : out;
	snprintf(dep, sizeof dep, "%s.d", o->output);
	o->depfile = o->depfile ? o->depfile : dep;
}

/* print_c, print_h, print_explain: the emitters, as write_output callbacks. */
static void print_c(FILE *f, void *ctx)
{
	Unit *u = ctx;
	Emitter E = {.out = f, .src_path = u->src_path};
	emit_program_c(&E, u->plan, u->prog->nkernels);
}

static void print_h(FILE *f, void *ctx)
{
	Unit *u = ctx;
	Emitter E = {.out = f, .src_path = u->src_path};
	emit_program_h(&E, u->plan, u->prog->nkernels);
}

static void print_explain(FILE *f, void *ctx)
{
	Unit *u = ctx;
	for (int i = 0; i < u->prog->nkernels; i++) {
		if (i)
			fputc('\n', f);
		explain_kernel(f, &u->plan[i]);
	}
}

/* print_deps: "OUTPUT: INPUT", and with -MP a phony target for the
 * input (make then survives a deleted .poly; CMake 3.20's depfile reader
 * does not take it, so it is not the default, as with gcc). */
static const char *dep_target;
static bool dep_phony;
static void print_deps(FILE *f, void *ctx)
{
	Unit *u = ctx;
	fprintf(f, "%s: %s\n", dep_target, u->src_path);
	if (dep_phony)
		fprintf(f, "%s:\n", u->src_path);
}

/* has_runtime_pic: whether the archive --emit=so links is there; if not,
 * say where it was looked for and how to get it. */
static bool has_runtime_pic(const CcOptions *cc, Diag *d)
{
	if (access(cc->runtime_pic, R_OK) == 0)
		return true;
	diag_plain(d, "cannot find the runtime '%s' that --emit=so links "
	           "(build it with make, install it with make install, or name "
	           "its directory with POLYC_LIB_DIR)", cc->runtime_pic);
	return false;
}

/* check_paths: refuse outputs that would overwrite the input or each
 * other, and a dependency file that could name no file (standard input
 * or output); exits with 2 on such a command line. */
static void check_paths(const Options *o)
{
	const char *out = o->output, *dep = o->depfile;
	bool md = o->md && o->action != ACT_EXPLAIN;
	if (md && strcmp(out, "-") == 0)
		usage_error("-MD needs an output file: standard output%s has no "
		            "name for the dependency file to give", "");
	if (md && strcmp(o->input, "-") == 0)
		usage_error("-MD needs an input file: standard input%s has no "
		            "name for the dependency file to give", "");
	if (strcmp(out, "-") != 0 && strcmp(o->input, "-") != 0 &&
	    same_file(out, o->input))
		usage_error("the output '%s' is the input file", out);
	if (md && (same_file(dep, o->input) || same_file(dep, out)))
		usage_error("the dependency file '%s' is the input or the output", dep);
}

/* emit_outputs: the file the action asks for, and the dependency file
 * (created first, so a dependency file that cannot be written leaves no
 * output behind either). */
static bool emit_outputs(const Options *o, Unit *u, Diag *d)
{
	const char *out = o->output, *depfile = o->depfile;
	OutFile dep;
	bool md = o->md && o->action != ACT_EXPLAIN;
	if (md && !out_open(&dep, depfile, OUT_DEPS, d))
		return false;
	bool ok;
	switch (o->action) {
	case ACT_OBJECT: ok = compile_c(out, CC_OBJECT, &o->cc, print_c, u, d); break;
	case ACT_ASM: ok = compile_c(out, CC_ASM, &o->cc, print_c, u, d); break;
	case ACT_LLVM: ok = compile_c(out, CC_LLVM, &o->cc, print_c, u, d); break;
	case ACT_SHARED: ok = has_runtime_pic(&o->cc, d) &&
	                      compile_c(out, CC_SHARED, &o->cc, print_c, u, d); break;
	case ACT_C: ok = write_output(out, print_c, u, d); break;
	case ACT_HEADER: ok = write_output(out, print_h, u, d); break;
	default: ok = write_output(out, print_explain, u, d); break;
	}
	if (md) {
		dep_target = out;
		dep_phony = o->mp;
		print_deps(dep.f, u);
		ok = out_close(&dep, ok, d) && ok;
	}
	return ok;
}

/* main: the pipeline. */
int main(int argc, char **argv)
{
	static Options o;
	static Unit u;
	Diag d = {.out = stderr};
	parse_options(&o, argc, argv);
	u.src_path = o.cc.src_name;
	u.prog = parse_file(o.input, &d);
	for (int i = 0; u.prog && i < o.ndefs; i++)
		if (!apply_define(u.prog, o.defs[i], &d))
			return 1;
	if (!u.prog)
		return 1;
	for (int i = 0; i < u.prog->nkernels; i++) {
		graph_build(&u.graph[i], &u.prog->kernels[i]);
		plan_build(&u.plan[i], &u.graph[i], &d);
	}
	if (d.errors || !emit_outputs(&o, &u, &d))
		return 1;
	SrcFile *src = u.prog->file;
	program_free(u.prog);
	src_free(src);
	return 0;
}
