/*
 * driver.c - everything polyc does to files and processes: writing
 * outputs atomically (a temporary file beside the target, renamed into
 * place only when complete, so a failed or interrupted run never leaves a
 * partial file) and running clang as the back end.  An interrupted polyc
 * (SIGINT, SIGTERM, SIGHUP) stops its clang and removes its temporaries
 * before it dies of the signal.
 */
#include "polyc.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* What on_signal cleans up: the temporaries that exist (TMP_OUT: a text
 * output, TMP_C: the C handed to clang, TMP_CC: clang's output) and the
 * clang that runs. */
enum { TMP_OUT, TMP_C, TMP_CC, TMP__COUNT };
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
		static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
		for (size_t k = 0; k < sizeof sigs / sizeof *sigs; k++)
			signal(sigs[k], on_signal);
		installed = true;
	}
	live_tmp[i] = path;
}

/* temp_beside: a fresh file "<path>.tmpXXXXXX" opened for writing, with
 * the permissions a plain create would give (0666 less the umask, not
 * mkstemp's 0600); its name goes to buf.  NULL (reported) on failure. */
static FILE *temp_beside(const char *path, char *buf, size_t sz, Diag *d)
{
	snprintf(buf, sz, "%s.tmpXXXXXX", path);
	int fd = mkstemp(buf);
	if (fd < 0) {
		diag_plain(d, "cannot create '%s': %s", buf, strerror(errno));
		return NULL;
	}
	mode_t mask = umask(0);
	umask(mask);
	fchmod(fd, 0666 & ~mask);
	return fdopen(fd, "w");
}

/* finish_temp: close f and rename tmp onto path; on any failure remove
 * tmp and report.  Returns success. */
static bool finish_temp(FILE *f, const char *tmp, const char *path, Diag *d)
{
	bool ok = !ferror(f);
	ok = (fclose(f) == 0) && ok;
	if (ok && rename(tmp, path) != 0) {
		diag_plain(d, "cannot write '%s': %s", path, strerror(errno));
		ok = false;
	} else if (!ok) {
		diag_plain(d, "cannot write '%s': %s", path, strerror(errno));
	}
	if (!ok)
		remove(tmp);
	return ok;
}

/* write_output: see polyc.h. */
bool write_output(const char *path, void (*fn)(FILE *, void *), void *ctx,
                  Diag *d)
{
	if (strcmp(path, "-") == 0) {
		fn(stdout, ctx);
		return fflush(stdout) == 0;
	}
	char tmp[4096];
	FILE *f = temp_beside(path, tmp, sizeof tmp, d);
	if (!f)
		return false;
	track(TMP_OUT, tmp);
	fn(f, ctx);
	bool ok = finish_temp(f, tmp, path, d);
	track(TMP_OUT, NULL);
	return ok;
}

/* run: run argv[0] with argv and wait; true when it exits with 0. */
static bool run(char **argv, Diag *d)
{
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
	if (rc != 0) {
		diag_plain(d, "cannot run the C compiler '%s': %s (install clang, "
		           "or name another with --cc or POLYC_CC)", argv[0],
		           strerror(rc));
		return false;
	}
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

/* cc_argv: the clang command line compiling src into obj, an output of
 * the given kind.  A shared object links the whole runtime archive (so
 * pa_strerror and pa_reference are there for its loader too), OpenMP and
 * libm, and must leave no symbol undefined. */
static int cc_argv(char **argv, CcOutput kind, const CcOptions *o, char *inc,
                   char *src, char *obj)
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
	argv[n++] = src;
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

/* copy_to_stdout: the bytes of file path on standard output. */
static bool copy_to_stdout(const char *path, Diag *d)
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
		ok = ok && fwrite(buf, 1, got, stdout) == got;
	fclose(f);
	return fflush(stdout) == 0 && ok;
}

/* compile_c: see polyc.h.  The C goes to a temporary file under $TMPDIR,
 * clang's output to a temporary beside path, renamed when clang
 * succeeds. */
bool compile_c(const char *path, CcOutput kind, const CcOptions *o,
               void (*fn)(FILE *, void *), void *ctx, Diag *d)
{
	const char *tdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char src[4096], obj[4096], inc[4096];
	snprintf(src, sizeof src, "%s/polyc-XXXXXX.c", tdir);
	int fd = mkstemps(src, 2);
	if (fd < 0) {
		diag_plain(d, "cannot create '%s': %s", src, strerror(errno));
		return false;
	}
	track(TMP_C, src);
	FILE *f = fdopen(fd, "w");
	fn(f, ctx);
	bool ok = !ferror(f);
	ok = fclose(f) == 0 && ok;
	const char *target = strcmp(path, "-") == 0 ? src : path;
	snprintf(obj, sizeof obj, "%s.tmp%d.o", target, (int)getpid());
	track(TMP_CC, obj);
	snprintf(inc, sizeof inc, "-I%s", o->include_dir);
	char *argv[64 + 24];
	cc_argv(argv, kind, o, inc, src, obj);
	ok = ok && run(argv, d);
	if (ok && strcmp(path, "-") == 0)
		ok = copy_to_stdout(obj, d);
	else if (ok && rename(obj, path) != 0) {
		diag_plain(d, "cannot write '%s': %s", path, strerror(errno));
		ok = false;
	}
	remove(src);
	if (!ok || strcmp(path, "-") == 0)
		remove(obj);
	track(TMP_C, NULL);
	track(TMP_CC, NULL);
	return ok;
}
