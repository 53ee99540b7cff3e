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

/* src_from_string = a SrcFile holding a copy of text, shown as name. */
SrcFile *src_from_string(const char *name, const char *text)
{
	SrcFile *f = calloc(1, sizeof *f);
	f->path = strdup(name);
	f->text = strdup(text);
	f->len = (int)strlen(text);
	return f;
}

/* src_free: release f and its text (NULL is fine). */
void src_free(SrcFile *f)
{
	if (!f)
		return;
	free(f->path);
	free(f->text);
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

/* src_read = the file at path, or NULL (reported to d) when it cannot be
 * read, is larger than PC_MAX_FILE bytes or contains a NUL byte. */
SrcFile *src_read(const char *path, Diag *d)
{
	FILE *fp = fopen(path, "rb");
	size_t len = 0;
	char *text = fp ? read_all(fp, PC_MAX_FILE, &len) : NULL;
	if (!text)
		diag_plain(d, "cannot read '%s': %s", path, strerror(errno));
	if (fp)
		fclose(fp);
	if (text && len > PC_MAX_FILE)
		diag_plain(d, "'%s' is larger than %d bytes, the most a .poly "
		           "file may hold", path, PC_MAX_FILE);
	else if (text && memchr(text, 0, len))
		diag_plain(d, "'%s' contains a NUL byte: a .poly file is text",
		           path);
	else if (text) {
		SrcFile *f = calloc(1, sizeof *f);
		f->path = strdup(path);
		f->text = text;
		f->len = (int)len;
		return f;
	}
	free(text);
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

/* loc_line_col: the 1-based line and byte column where l starts. */
void loc_line_col(Loc l, int *line, int *col)
{
	int ln = 1, start = 0;
	for (int i = 0; l.file && i < l.off && i < l.file->len; i++)
		if (l.file->text[i] == '\n') {
			ln++;
			start = i + 1;
		}
	*line = ln;
	*col = l.off - start + 1;
}

/* is_cont: b continues a UTF-8 sequence (takes no column of its own). */
static bool is_cont(char b)
{
	return ((unsigned char)b & 0xc0) == 0x80;
}

/* print_excerpt: the line l starts on, indented by four spaces, and
 * under it '^' at l's first byte and '~' over the rest of l on that
 * line.  Tabs before the caret are echoed so the caret lines up. */
static void print_excerpt(FILE *out, Loc l)
{
	const char *t = l.file->text;
	int start = l.off, end = l.off;
	while (start > 0 && t[start - 1] != '\n')
		start--;
	while (end < l.file->len && t[end] != '\n')
		end++;
	fprintf(out, "    %.*s\n    ", end - start, t + start);
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
 * MESSAGE" when l has no file. */
static void report(Diag *d, Loc l, const char *kind, const char *fmt,
                   va_list ap)
{
	FILE *out = d->out ? d->out : stderr;
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
