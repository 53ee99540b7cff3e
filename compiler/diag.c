/*
 * diag.c - source texts and diagnostics.  Tokens and tree nodes carry only
 * byte offsets (Loc); this file alone turns them into "file:line:col",
 * prints the source line and a "^~~~" under the culprit, and counts the
 * errors.  It also reads .poly files, refusing what is not a small text:
 * files over PC_MAX_FILE bytes and files holding a NUL byte.
 */
#include "polyc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* index_lines: f->line_start[i] = the offset where line i + 1 begins,
 * for every line of f's text, so a location's line is a binary search
 * (diagnostics on many lines of a large file cost no more than the file). */
static void index_lines(SrcFile *f)
{
	int n = 1;
	for (int i = 0; i < f->len; i++)
		n += f->text[i] == '\n';
	f->line_start = malloc(n * sizeof *f->line_start);
	f->nlines = 0;
	f->line_start[f->nlines++] = 0;
	for (int i = 0; i < f->len; i++)
		if (f->text[i] == '\n')
			f->line_start[f->nlines++] = i + 1;
}

/* src_make = a SrcFile named path holding text[0..len), len ≤ INT_MAX. */
static SrcFile *src_make(const char *path, char *text, size_t len)
{
	SrcFile *f = calloc(1, sizeof *f);
	f->path = strdup(path);
	f->text = text;
	f->len = (int)len;
	index_lines(f);
	return f;
}

/* src_from_string = a SrcFile holding a copy of text, shown as name. */
SrcFile *src_from_string(const char *name, const char *text)
{
	return src_make(name, strdup(text), strlen(text));
}

/* src_free: release f and its text (NULL is fine). */
void src_free(SrcFile *f)
{
	if (!f)
		return;
	free(f->path);
	free(f->text);
	free(f->line_start);
	free(f);
}

/* read_all = the first up to max+1 bytes of fp in a NUL-terminated heap
 * buffer, their count in *len; NULL on a read error (errno set). */
static char *read_all(FILE *fp, size_t max, size_t *len)
{
	char *buf = malloc(max + 2);
	*len = fread(buf, 1, max + 1, fp);
	if (ferror(fp)) {
		free(buf);
		return NULL;
	}
	buf[*len] = 0;
	return realloc(buf, *len + 1);
}

/* src_read = the file at path ("-": standard input, shown as "<stdin>"),
 * or NULL (reported to d) when it cannot be read, is larger than
 * PC_MAX_FILE bytes or contains a NUL byte; the last two are reported at
 * their place in the text, as every mistake in a .poly file is. */
SrcFile *src_read(const char *path, Diag *d)
{
	bool is_stdin = strcmp(path, "-") == 0;
	FILE *fp = is_stdin ? stdin : fopen(path, "rb");
	size_t len = 0;
	char *text = fp ? read_all(fp, PC_MAX_FILE, &len) : NULL;
	if (!text)
		diag_plain(d, "cannot read '%s': %s", path, strerror(errno));
	if (fp && !is_stdin)
		fclose(fp);
	if (!text)
		return NULL;
	SrcFile *f = src_make(is_stdin ? "<stdin>" : path, text, len);
	const char *nul = memchr(text, 0, len);
	if (len > PC_MAX_FILE) {
		f->len = PC_MAX_FILE;
		diag_error(d, (Loc){f, PC_MAX_FILE, 0}, "the file goes on past %d "
		           "bytes, the most a .poly file may hold", PC_MAX_FILE);
	} else if (nul) {
		diag_error(d, (Loc){f, (int)(nul - text), 1}, "NUL byte (0x00): a "
		           ".poly file is text");
	} else {
		return f;
	}
	src_free(f);
	return NULL;
}

/* loc_span = the smallest Loc covering a and b (b at or after a). */
Loc loc_span(Loc a, Loc b)
{
	if (!a.file)
		return b;
	if (!b.file)
		return a;
	int end = b.off + b.len > a.off + a.len ? b.off + b.len : a.off + a.len;
	return (Loc){a.file, a.off, end - a.off};
}

/* src_bom: the bytes of a UTF-8 byte-order mark at the start of f
 * (3), which the scanner skips and columns do not count, or 0. */
int src_bom(const SrcFile *f)
{
	return f->len >= 3 && memcmp(f->text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
}

/* loc_line_col: the 1-based line and byte column where l starts. */
void loc_line_col(Loc l, int *line, int *col)
{
	if (!l.file) {
		*line = *col = 1;
		return;
	}
	int lo = 0, hi = l.file->nlines - 1;
	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;
		if (l.file->line_start[mid] <= l.off)
			lo = mid;
		else
			hi = mid - 1;
	}
	int start = lo == 0 && l.off >= src_bom(l.file) ? src_bom(l.file)
	                                                : l.file->line_start[lo];
	*line = lo + 1;
	*col = l.off - start + 1;
}

/* is_cont: b continues a UTF-8 sequence (takes no column of its own). */
static bool is_cont(char b)
{
	return ((unsigned char)b & 0xc0) == 0x80;
}

/* EXCERPT_HALF: bytes of a long line shown on each side of the culprit. */
enum { EXCERPT_HALF = 120 };

/* char_start: i moved back to the first byte of the UTF-8 sequence it is
 * in, not below lo. */
static int char_start(const char *t, int i, int lo)
{
	while (i > lo && is_cont(t[i]))
		i--;
	return i;
}

/* print_excerpt: the line l starts on, indented by four spaces, and
 * under it '^' at l's first byte and '~' over the rest of l on that
 * line.  Tabs before the caret are echoed so the caret lines up.  Of a
 * line longer than 2·EXCERPT_HALF bytes only a window around l is shown,
 * "..." marking what is cut. */
static void print_excerpt(FILE *out, Loc l)
{
	const char *t = l.file->text;
	int start = l.off, end = l.off;
	while (start > 0 && t[start - 1] != '\n')
		start--;
	while (end < l.file->len && t[end] != '\n')
		end++;
	if (start == 0)
		start = l.off >= src_bom(l.file) ? src_bom(l.file) : 0;
	bool cut_left = l.off - start > EXCERPT_HALF;
	int right = l.off + (l.len < EXCERPT_HALF ? l.len : EXCERPT_HALF);
	bool cut_right = end - right > EXCERPT_HALF;
	if (cut_left)
		start = char_start(t, l.off - EXCERPT_HALF, start);
	if (cut_right)
		end = char_start(t, right + EXCERPT_HALF, l.off);
	fprintf(out, "    %s%.*s%s\n    %s", cut_left ? "..." : "", end - start,
	        t + start, cut_right ? "..." : "", cut_left ? "   " : "");
	for (int i = start; i < l.off; i++)
		if (!is_cont(t[i]))
			fputc(t[i] == '\t' ? '\t' : ' ', out);
	fputc('^', out);
	for (int i = l.off + 1; i < l.off + l.len && i < end; i++)
		if (!is_cont(t[i]))
			fputc('~', out);
	fputc('\n', out);
}

/* report: "path:L:C: KIND: MESSAGE" and the excerpt, or "polyc: KIND:
 * MESSAGE" when l has no file.  Past PC_MAX_ERRORS errors nothing more
 * is printed (one line says so); errors are still counted. */
static void report(Diag *d, Loc l, const char *kind, const char *fmt,
                   va_list ap)
{
	FILE *out = d->out ? d->out : stderr;
	bool note = strcmp(kind, "note") == 0;
	if (d->muted || (!note && d->errors >= PC_MAX_ERRORS)) {
		if (!d->muted)
			fprintf(out, "polyc: error: too many errors (%d); stopping "
			        "here\n", PC_MAX_ERRORS);
		d->muted = true;
		return;
	}
	if (!l.file) {
		fprintf(out, "polyc: %s: ", kind);
	} else {
		int line, col;
		loc_line_col(l, &line, &col);
		fprintf(out, "%s:%d:%d: %s: ", l.file->path, line, col, kind);
	}
	vfprintf(out, fmt, ap);
	fputc('\n', out);
	if (l.file && l.file->len > 0)
		print_excerpt(out, l);
}

/* diag_error: report an error at l and count it. */
void diag_error(Diag *d, Loc l, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report(d, l, "error", fmt, ap);
	va_end(ap);
	d->errors++;
}

/* diag_warning: report a warning at l (counted apart: it fails nothing). */
void diag_warning(Diag *d, Loc l, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (!d->muted)
		report(d, l, "warning", fmt, ap);
	va_end(ap);
	d->warnings++;
}

/* diag_note: add a note at l to the error just reported (not counted). */
void diag_note(Diag *d, Loc l, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report(d, l, "note", fmt, ap);
	va_end(ap);
}

/* diag_plain: report an error that has no place in a source. */
void diag_plain(Diag *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report(d, (Loc){0}, "error", fmt, ap);
	va_end(ap);
	d->errors++;
}
