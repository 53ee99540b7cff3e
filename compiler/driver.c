/*
 * driver.c - everything polyc does to files and processes: writing
 * outputs atomically and running clang as the back end.
 *
 * A regular output file is written to a temporary beside it and renamed
 * into place only when complete, so a failed or interrupted run never
 * leaves a partial file; a symlink is followed and its target replaced
 * the same way; a device, FIFO or socket (/dev/null, a pipe) is written
 * in place, never replaced.  clang reads the generated C from an
 * anonymous memory file on its standard input (no temporary C file, and
 * objects name the .poly file, not a random temporary: they are
 * byte-for-byte reproducible).  A polyc stopped by a signal it can catch
 * stops its clang and removes its temporaries before it dies of the
 * signal; clang also dies with polyc when polyc is killed outright
 * (SIGKILL), through the parent-death signal.
 */
#include "polyc.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* What on_signal cleans up: the temporaries that exist (TMP_OUT: a text
 * output, TMP_DEP: the dependency file, TMP_CC: clang's output) and the
 * clang that runs. */
enum { TMP_OUT = OUT_MAIN, TMP_DEP = OUT_DEPS, TMP_CC, TMP__COUNT };
static const char *volatile live_tmp[TMP__COUNT];
static volatile pid_t live_cc;

/* on_signal: stop clang, remove the temporaries, die of sig. */
static void on_signal(int sig)
{
	if (live_cc > 0) {
		kill(live_cc, SIGTERM);
		waitpid(live_cc, NULL, 0);
	}
	for (int i = 0; i < TMP__COUNT; i++)
		if (live_tmp[i])
			unlink(live_tmp[i]);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* track: path (NULL: none) is the live temporary of kind i; the first
 * call installs on_signal. */
static void track(int i, const char *path)
{
	static bool installed;
	if (!installed) {
		static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT,
		                           SIGPIPE, SIGALRM, SIGUSR1, SIGUSR2,
		                           SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF};
		for (size_t k = 0; k < sizeof sigs / sizeof *sigs; k++)
			signal(sigs[k], on_signal);
		installed = true;
	}
	live_tmp[i] = path;
}

/* final_path: path with every symbolic link followed (a dangling one
 * too: its target is what gets created), in buf of PATH_MAX bytes. */
static const char *final_path(const char *path, char *buf)
{
	snprintf(buf, PATH_MAX, "%s", path);
	for (int hops = 0; hops < 40; hops++) {
		char link[PATH_MAX], dir[PATH_MAX];
		struct stat st;
		if (lstat(buf, &st) != 0 || !S_ISLNK(st.st_mode))
			break;
		ssize_t n = readlink(buf, link, sizeof link - 1);
		if (n < 0)
			break;
		link[n] = 0;
		snprintf(dir, sizeof dir, "%s", buf);
		if (link[0] == '/')
			snprintf(buf, PATH_MAX, "%s", link);
		else
			snprintf(buf, PATH_MAX, "%s/%s", dirname(dir), link);
	}
	return buf;
}

/* in_place: path exists and is not a regular file (a device, a FIFO, a
 * socket): it is written where it is, never replaced. */
static bool in_place(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && !S_ISREG(st.st_mode);
}

/* dir_writable: whether a file can be created beside path; if not, why
 * is reported under the user's name for it, shown. */
static bool dir_writable(const char *path, const char *shown, Diag *d)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	if (access(dirname(dir), W_OK | X_OK) == 0)
		return true;
	diag_plain(d, "cannot write '%s': %s", shown, strerror(errno));
	return false;
}

/* same_file: see polyc.h. */
bool same_file(const char *a, const char *b)
{
	char fa[PATH_MAX], fb[PATH_MAX];
	struct stat sa, sb;
	if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
		return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	return strcmp(final_path(a, fa), final_path(b, fb)) == 0;
}

/* out_open: see polyc.h.  A regular file's temporary gets the
 * permissions a plain create would give (0666 less the umask, not
 * mkstemp's 0600). */
bool out_open(OutFile *o, const char *path, int kind, Diag *d)
{
	*o = (OutFile){.path = path, .kind = kind};
	if (strcmp(path, "-") == 0) {
		o->f = stdout;
		return true;
	}
	final_path(path, o->target);
	if (in_place(o->target)) {
		o->f = fopen(o->target, "w");
		if (!o->f)
			diag_plain(d, "cannot write '%s': %s", path, strerror(errno));
		return o->f != NULL;
	}
	snprintf(o->tmp, sizeof o->tmp, "%s.tmpXXXXXX", o->target);
	int fd = mkstemp(o->tmp);
	if (fd < 0) {
		diag_plain(d, "cannot write '%s': %s", path, strerror(errno));
		return false;
	}
	mode_t mask = umask(0);
	umask(mask);
	fchmod(fd, 0666 & ~mask);
	track(kind, o->tmp);
	o->f = fdopen(fd, "w");
	return true;
}

/* out_close: see polyc.h. */
bool out_close(OutFile *o, bool keep, Diag *d)
{
	if (o->f == stdout)
		return fflush(stdout) == 0 && keep;
	bool ok = !ferror(o->f);
	ok = fclose(o->f) == 0 && ok;
	if (keep && !ok)
		diag_plain(d, "cannot write '%s': %s", o->path, strerror(errno));
	keep = keep && ok;
	if (o->tmp[0] && keep && rename(o->tmp, o->target) != 0) {
		diag_plain(d, "cannot write '%s': %s", o->path, strerror(errno));
		keep = false;
	}
	if (o->tmp[0] && !keep)
		remove(o->tmp);
	if (o->tmp[0])
		track(o->kind, NULL);
	return keep;
}

/* write_output: see polyc.h. */
bool write_output(const char *path, void (*fn)(FILE *, void *), void *ctx,
                  Diag *d)
{
	OutFile o;
	if (!out_open(&o, path, TMP_OUT, d))
		return false;
	fn(o.f, ctx);
	return out_close(&o, true, d);
}

/* spawn: start argv[0] with argv and standard input in_fd, tied to
 * polyc's life (it gets SIGTERM when polyc dies, however polyc dies); its
 * pid, or -1 (reported) when it cannot be started. */
static pid_t spawn(char **argv, int in_fd, Diag *d)
{
	pid_t parent = getpid();
	int err[2];
	if (pipe2(err, O_CLOEXEC) != 0) {
		diag_plain(d, "cannot run '%s': %s", argv[0], strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() == parent && dup2(in_fd, 0) == 0)
			execvp(argv[0], argv);
		int e = errno;
		ssize_t w = write(err[1], &e, sizeof e);
		(void)w;
		_exit(127);
	}
	close(err[1]);
	int e = 0;
	ssize_t got = pid < 0 ? 0 : read(err[0], &e, sizeof e);
	close(err[0]);
	if (pid < 0 || got == sizeof e) {
		if (pid > 0)
			waitpid(pid, NULL, 0);
		diag_plain(d, "cannot run the C compiler '%s': %s (install clang, "
		           "or name another with --cc or POLYC_CC)", argv[0],
		           strerror(pid < 0 ? errno : e));
		return -1;
	}
	return pid;
}

/* run: run argv[0] with argv, standard input in_fd, and wait; true when
 * it exits with 0. */
static bool run(char **argv, int in_fd, Diag *d)
{
	pid_t pid = spawn(argv, in_fd, d);
	if (pid < 0)
		return false;
	live_cc = pid;
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR) {
			diag_plain(d, "waiting for '%s': %s", argv[0], strerror(errno));
			return false;
		}
	live_cc = 0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return true;
	if (WIFEXITED(st))
		diag_plain(d, "the C compiler '%s' failed with exit status %d",
		           argv[0], WEXITSTATUS(st));
	else
		diag_plain(d, "the C compiler '%s' was killed by signal %d",
		           argv[0], WTERMSIG(st));
	return false;
}

/* cc_argv: the clang command line compiling the C on its standard input
 * into obj, an output of the given kind.  The C is named after the .poly
 * file (-main-file-name: the object's file symbol and debug information
 * say compose2.poly, not "-").  A shared object links the whole runtime
 * archive (so pa_strerror and pa_reference are there for its loader
 * too), OpenMP and libm, and must leave no symbol undefined. */
static int cc_argv(char **argv, CcOutput kind, const CcOptions *o, char *inc,
                   char *obj)
{
	int n = 0;
	argv[n++] = (char *)o->cc;
	argv[n++] = "-std=c11";
	argv[n++] = (char *)o->opt;
	if (o->march)
		argv[n++] = (char *)o->march;
	argv[n++] = "-fopenmp";
	argv[n++] = "-fPIC";
	argv[n++] = inc;
	for (int i = 0; i < o->nextra; i++)
		argv[n++] = (char *)o->extra[i];
	if (kind == CC_SHARED)
		argv[n++] = "-shared";
	else
		argv[n++] = kind == CC_OBJECT ? "-c" : "-S";
	if (kind == CC_LLVM)
		argv[n++] = "-emit-llvm";
	argv[n++] = "-Xclang";
	argv[n++] = "-main-file-name";
	argv[n++] = "-Xclang";
	argv[n++] = (char *)o->src_name;
	argv[n++] = "-x";
	argv[n++] = "c";
	argv[n++] = "-";
	argv[n++] = "-x";
	argv[n++] = "none";
	if (kind == CC_SHARED) {
		argv[n++] = "-Wl,--whole-archive";
		argv[n++] = (char *)o->runtime_pic;
		argv[n++] = "-Wl,--no-whole-archive";
		argv[n++] = "-Wl,-z,defs";
		argv[n++] = "-lm";
	}
	argv[n++] = "-o";
	argv[n++] = obj;
	argv[n] = NULL;
	return n;
}

/* copy_file: the bytes of file path onto f. */
static bool copy_file(const char *path, FILE *to, Diag *d)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		diag_plain(d, "cannot read '%s': %s", path, strerror(errno));
		return false;
	}
	char buf[1 << 16];
	size_t got;
	bool ok = true;
	while ((got = fread(buf, 1, sizeof buf, f)) > 0)
		ok = ok && fwrite(buf, 1, got, to) == got;
	fclose(f);
	return ok;
}

/* c_source: a memory file holding the C fn prints, read from its start;
 * -1 (reported) on failure. */
static int c_source(void (*fn)(FILE *, void *), void *ctx, Diag *d)
{
	int fd = memfd_create("polyc.c", MFD_CLOEXEC);
	FILE *f = fd < 0 ? NULL : fdopen(dup(fd), "w");
	if (!f) {
		diag_plain(d, "cannot hold the generated C: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	fn(f, ctx);
	bool ok = !ferror(f);
	ok = fclose(f) == 0 && ok && lseek(fd, 0, SEEK_SET) == 0;
	if (!ok) {
		diag_plain(d, "cannot hold the generated C: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* compile_c: see polyc.h.  clang writes a regular target's output to a
 * temporary beside it, renamed when clang succeeds (the directory is
 * checked first, so its problems are reported under the user's path).
 * Standard output and targets written in place (a device, a FIFO) get
 * the bytes of a temporary under $TMPDIR, copied when clang succeeds. */
bool compile_c(const char *path, CcOutput kind, const CcOptions *o,
               void (*fn)(FILE *, void *), void *ctx, Diag *d)
{
	char target[PATH_MAX], obj[PATH_MAX + 64], inc[4096];
	bool to_stdout = strcmp(path, "-") == 0;
	bool copy = to_stdout || in_place(final_path(path, target));
	if (copy) {
		const char *tdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
		snprintf(obj, sizeof obj, "%s/polyc-%d.o", tdir, (int)getpid());
	} else {
		if (!dir_writable(target, path, d))
			return false;
		snprintf(obj, sizeof obj, "%s.tmp%d", target, (int)getpid());
	}
	int src = c_source(fn, ctx, d);
	if (src < 0)
		return false;
	track(TMP_CC, obj);
	snprintf(inc, sizeof inc, "-I%s", o->include_dir);
	char *argv[64 + 32];
	cc_argv(argv, kind, o, inc, obj);
	bool ok = run(argv, src, d);
	close(src);
	if (ok && copy) {
		OutFile out;
		ok = out_open(&out, path, OUT_MAIN, d);
		ok = ok && out_close(&out, copy_file(obj, out.f, d), d);
	} else if (ok && rename(obj, target) != 0) {
		diag_plain(d, "cannot write '%s': %s", path, strerror(errno));
		ok = false;
	}
	if (!ok || copy)
		remove(obj);
	track(TMP_CC, NULL);
	return ok;
}
