/*
 * fuzz_parse.c - the libFuzzer harness of polyc's front end and emitters.
 *
 * Each input is a .poly text.  When it holds a NUL byte, the bytes after
 * the first NUL are applied as the text of a -D option (up to the next
 * NUL), so definitions are fuzzed with the same input.  Whatever the
 * parser accepts is carried through the rest of the pipeline exactly as
 * polyc's main does it: graph, plan, --explain, the C and the header, all
 * written to /dev/null.  The harness asserts nothing itself: a crash, a
 * sanitizer report, a leak or a failed assertion (emit_close, the indent
 * back to zero) is the finding.
 *
 *   make fuzz FUZZ_SECONDS=600       (see the Makefile)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "polyc.h"

/* The graphs and plans of one file, as in main.c (too big for the stack). */
static Graph graphs[PC_MAX_KERNELS];
static Plan plans[PC_MAX_KERNELS];

/* sink = /dev/null, opened once; diagnostics and generated text go there. */
static FILE *sink(void)
{
	static FILE *f;
	if (!f)
		f = fopen("/dev/null", "w");
	return f;
}

/* emit_all: everything polyc prints for a program that planned cleanly. */
static void emit_all(const Program *p, Diag *d)
{
	for (int i = 0; i < p->nkernels; i++) {
		graph_build(&graphs[i], &p->kernels[i]);
		plan_build(&plans[i], &graphs[i], d);
	}
	if (d->errors)
		return;
	for (int i = 0; i < p->nkernels; i++)
		explain_kernel(sink(), &plans[i]);
	Emitter E = {.out = sink(), .src_path = "fuzz.poly"};
	emit_program_c(&E, plans, p->nkernels);
	Emitter H = {.out = sink(), .src_path = "fuzz.poly"};
	emit_program_h(&H, plans, p->nkernels);
}

/* LLVMFuzzerTestOneInput: one input through the whole front end. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > PC_MAX_FILE)
		return -1;           /* src_read refuses larger files */
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = 0;
	const char *def = strlen(text) < size ? text + strlen(text) + 1 : NULL;
	Diag d = {.out = sink()};
	SrcFile *f = src_from_string("fuzz.poly", text);
	Program *p = parse_source(f, &d);
	if (p && def && !apply_define(p, def, &d)) {
		program_free(p);
		p = NULL;
	}
	if (p)
		emit_all(p, &d);
	program_free(p);
	src_free(f);
	free(text);
	return 0;
}
