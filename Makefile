# polyc - a compiler for poly-attention.
#
#   make            build build/polyc and build/libpolyattn.a
#   make test       unit suites, end-to-end kernel and gradient checks,
#                   generated/ freshness, examples, install, the Python package
#   make python-test  pytest python/tests on the package, against this tree's polyc
#   make train-example  gradient steps with compose2 (the loss must go down)
#   make sanitize   the suites with everything built under ASan and UBSan
#   make fuzz       libFuzzer on the front end (FUZZ_SECONDS, default 60)
#   make bench-large  a tree kernel at n = 100,000: seconds, peak RSS
#   make run        compile examples/compose2.poly and run its program
#   make examples   build every example program under build/examples/
#   make bench      time the tree kernels (and PyTorch, if installed)
#   make bench-general  Strassen and 3-tensor kernels beside OpenBLAS sgemm
#   make bench-approx   approximate kernels beside exact ones, n = 4096…65536
#   make paper     the paper's composition experiment and cost table (QUICK=1)
#   make bench-backward training forward and backward beside PyTorch autograd
#   make generated  rewrite generated/ from examples/*.poly
#   make install    polyc, polyattn.h, libpolyattn.a, pkg-config and CMake
#                   files and the man page under $(DESTDIR)$(PREFIX)
#   make clean      remove build/

CC      = clang
CFLAGS  = -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra
CPPFLAGS = -Icompiler -Iruntime -I$(B)/grammar -MMD -MP
CHECK_LIBS = $(shell pkg-config --libs check)
CHECK_CFLAGS = $(shell pkg-config --cflags check)
B = build

COMPILER_SRC = compiler/ast.c compiler/diag.c compiler/parse.c \
               compiler/graph.c compiler/plan.c compiler/explain.c \
               compiler/emit.c compiler/emit_tree.c compiler/emit_attend.c \
               compiler/emit_elim.c compiler/approx.c compiler/emit_approx.c \
               compiler/names.c compiler/driver.c
GRAMMAR_SRC  = $(B)/grammar/parser.c $(B)/grammar/lexer.c
RUNTIME_SRC  = runtime/pa_status.c runtime/pa_reference.c runtime/pa_kernel.c \
               runtime/pa_elim.c runtime/pa_elim_grad.c runtime/pa_approx.c runtime/pa_approx_grad.c \
               runtime/pa_approx_tree.c runtime/pa_edge.c runtime/pa_tree_grad.c runtime/pa_threads.c runtime/pa_tensor3.c \
               runtime/pa_call.c runtime/pa_reference_call.c runtime/pa_attend_row.c
TEST_SRC     = tests/check_main.c tests/check_parse.c tests/check_runtime.c \
               tests/check_graph.c tests/check_reference_grad.c tests/check_workspace.c \
               tests/check_elim_paths.c
EXAMPLES     = self_attention compose2 compose3 star strassen

COMPILER_OBJ = $(COMPILER_SRC:%.c=$(B)/%.o) $(GRAMMAR_SRC:%.c=%.o)
RUNTIME_OBJ  = $(RUNTIME_SRC:%.c=$(B)/%.o)
TEST_OBJ     = $(TEST_SRC:%.c=$(B)/%.o)
POLYC        = $(B)/polyc
LIBPA        = $(B)/libpolyattn.a

# Generated kernels use OpenMP; programs linking them need it too.
KERNEL_LDLIBS = $(LIBPA) -fopenmp -lm

.PHONY: bench-general train-example all test unit e2e diag install check-install check-generated generated examples run bench clean \
        fuzz sanitize sanitize-run cli bench-large bench-approx
.SUFFIXES:

all: $(POLYC) $(LIBPA)

# --- grammar: flex and bison output under build/grammar/
$(B)/grammar/parser.c $(B)/grammar/parser.h &: grammar/parser.y
	@mkdir -p $(@D)
	bison -Wall --defines=$(B)/grammar/parser.h -o $(B)/grammar/parser.c $<

$(B)/grammar/lexer.c $(B)/grammar/lexer.h &: grammar/lexer.l $(B)/grammar/parser.h
	@mkdir -p $(@D)
	flex --header-file=$(B)/grammar/lexer.h -o $(B)/grammar/lexer.c $<

$(B)/grammar/%.o: $(B)/grammar/%.c $(B)/grammar/parser.h $(B)/grammar/lexer.h
	$(CC) $(CFLAGS) -Wno-unused-function -Wno-sign-compare $(CPPFLAGS) -c $< -o $@

$(B)/compiler/parse.o $(B)/compiler/ast.o: $(B)/grammar/parser.h $(B)/grammar/lexer.h

# --- objects
$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(CPPFLAGS) $(CHECK_CFLAGS) -c $< -o $@

# The elimination engine spreads its loops over threads.
$(B)/runtime/pa_elim.o $(B)/runtime/pa_elim_grad.o $(B)/runtime/pa_approx.o $(B)/runtime/pa_edge.o \
$(B)/runtime/pa_tree_grad.o $(B)/runtime/pa_threads.o $(B)/runtime/pa_call.o $(B)/runtime/pa_kernel.o \
$(B)/runtime/pa_tensor3.o $(B)/runtime/pa_approx_grad.o $(B)/runtime/pa_approx_tree.o: override CFLAGS += -fopenmp
# The backward's micro-kernels and the one-query kernel want their small loops unrolled.
$(B)/runtime/pa_edge.o $(B)/runtime/pa_approx_grad.o $(B)/runtime/pa_attend_row.o: override CFLAGS += -O3

$(B)/compiler/main.o: CPPFLAGS += -DPOLYC_INCLUDE_DIR='"$(CURDIR)/runtime"'

$(B)/libpolyc.a: $(COMPILER_OBJ)
	rm -f $@ && ar rcs $@ $^

$(POLYC): $(B)/compiler/main.o $(B)/libpolyc.a
	$(CC) $(CFLAGS) $^ -lm -o $@

$(LIBPA): $(RUNTIME_OBJ)
	rm -f $@ && ar rcs $@ $^

# --- the runtime again, position-independent and with OpenMP throughout:
# polyc --emit=so links it into every shared object it makes, finding it
# in $(B) (or <prefix>/lib once installed, or $POLYC_LIB_DIR).
LIBPA_PIC = $(B)/libpolyattn_pic.a
$(B)/pic/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fPIC -fopenmp $(CPPFLAGS) -c $< -o $@
$(LIBPA_PIC): $(RUNTIME_SRC:%.c=$(B)/pic/%.o)
	rm -f $@ && ar rcs $@ $^
all: $(LIBPA_PIC)
$(B)/compiler/main.o: CPPFLAGS += -DPOLYC_LIB_DIR='"$(abspath $(B))"'
install: install-pic
install-pic: $(LIBPA_PIC)
	install -d $(DESTDIR)$(PREFIX)/lib
	install -m 644 $(LIBPA_PIC) $(DESTDIR)$(PREFIX)/lib/libpolyattn_pic.a
.PHONY: install-pic

# --- unit suites
$(B)/check_unit: $(TEST_OBJ) $(B)/libpolyc.a $(LIBPA)
	$(CC) $(CFLAGS) $^ $(CHECK_LIBS) -fopenmp -lm -o $@

unit: $(B)/check_unit
	$(B)/check_unit

# --- end-to-end: compile tests/e2e/*.txt into kernels, compare with pa_reference.
# Tree cases are split by head_dim (a .poly file holds at most 256 kernels,
# and the sets compile in parallel under make -j).
E2E = $(B)/e2e
TREE_HEAD_DIMS = 1 3 16 64
E2E_SETS = $(TREE_HEAD_DIMS:%=tree_h%) general
$(E2E)/tree_h%/cases.poly $(E2E)/tree_h%/cases_table.c: tests/e2e/polys.txt tests/e2e/mkcases.sh
	sh tests/e2e/mkcases.sh tests/e2e/polys.txt "$*" "1 5 64" $(E2E)/tree_h$*
$(E2E)/general/cases.poly $(E2E)/general/cases_table.c: tests/e2e/polys_general.txt tests/e2e/mkcases.sh
	sh tests/e2e/mkcases.sh tests/e2e/polys_general.txt "1 3 16" "1 5" $(E2E)/general

# Tree edges of 20480 columns: the micro-kernels' scratch in the workspace.
$(E2E)/wide/cases.poly $(E2E)/wide/cases_table.c: tests/e2e/polys_wide.txt tests/e2e/mkcases.sh
	sh tests/e2e/mkcases.sh tests/e2e/polys_wide.txt "4096" "5" $(E2E)/wide

# Masks: causal, strict, windowed and explicit constraints, on trees and
# (forward only) on graphs the elimination engine runs.
$(E2E)/masked/cases.poly $(E2E)/masked/cases_table.c: tests/e2e/polys_masked.txt tests/e2e/mkcases.sh
	sh tests/e2e/mkcases.sh tests/e2e/polys_masked.txt "3 16" "1 5" $(E2E)/masked

$(E2E)/masked_general/cases.poly $(E2E)/masked_general/cases_table.c: tests/e2e/polys_masked_general.txt tests/e2e/mkcases.sh
	sh tests/e2e/mkcases.sh tests/e2e/polys_masked_general.txt "3 16" "1 5" $(E2E)/masked_general

$(E2E)/approx/cases.poly $(E2E)/approx/cases_table.c: tests/e2e/polys_approx.txt tests/e2e/mkcases.sh
	sh tests/e2e/mkcases.sh tests/e2e/polys_approx.txt "2 3" "1 4" $(E2E)/approx

$(E2E)/approx_masked/cases.poly $(E2E)/approx_masked/cases_table.c: tests/e2e/polys_approx_masked.txt tests/e2e/mkcases.sh
	sh tests/e2e/mkcases.sh tests/e2e/polys_approx_masked.txt "1 3" "3" $(E2E)/approx_masked

$(E2E)/%/cases.h: $(E2E)/%/cases.poly $(POLYC)
	$(POLYC) $< --emit=h -o $@
$(E2E)/%/cases.o: $(E2E)/%/cases.poly $(POLYC)
	$(POLYC) $(POLYC_FLAGS) $< -c -o $@
$(E2E)/%/cases_table.o: $(E2E)/%/cases_table.c $(E2E)/%/cases.h
	$(CC) $(CFLAGS) -Iruntime -I$(E2E)/$* -c $< -o $@
$(E2E)/check_e2e.o: tests/check_e2e.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fopenmp -Iruntime $(CHECK_CFLAGS) -c $< -o $@
$(E2E)/check_%: $(E2E)/check_e2e.o $(E2E)/%/cases.o $(E2E)/%/cases_table.o $(LIBPA)
	$(CC) $(CFLAGS) $^ $(CHECK_LIBS) -fopenmp -lm -o $@
# The approximate kernels: outputs within K_info's promise at the bound.
$(E2E)/check_approx.o: tests/check_approx.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iruntime $(CHECK_CFLAGS) -c $< -o $@
$(E2E)/check_approx: $(E2E)/check_approx.o $(E2E)/approx/cases.o $(E2E)/approx/cases_table.o $(LIBPA)
	$(CC) $(CFLAGS) $^ $(CHECK_LIBS) -fopenmp -lm -o $@
# The same checks on masked trees (pa_reference honours the masks).
$(E2E)/check_approx_masked: $(E2E)/check_approx.o $(E2E)/approx_masked/cases.o \
                            $(E2E)/approx_masked/cases_table.o $(LIBPA)
	$(CC) $(CFLAGS) $^ $(CHECK_LIBS) -fopenmp -lm -o $@

# The approximate kernels' gradients: within the promise of the exact
# ones, and close to the exact gradient of the function they compute.
$(E2E)/check_approx_grad.o: tests/check_approx_grad.c tests/e2e_inputs.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fopenmp -Iruntime $(CHECK_CFLAGS) -c $< -o $@
$(E2E)/check_approx_grad: $(E2E)/check_approx_grad.o $(E2E)/approx/cases.o $(E2E)/approx/cases_table.o $(LIBPA)
	$(CC) $(CFLAGS) $^ $(CHECK_LIBS) -fopenmp -lm -o $@
$(E2E)/grad_approx_masked: $(E2E)/check_approx_grad.o $(E2E)/approx_masked/cases.o \
                           $(E2E)/approx_masked/cases_table.o $(LIBPA)
	$(CC) $(CFLAGS) $^ $(CHECK_LIBS) -fopenmp -lm -o $@

# Gradients of every kernel with a backward against pa_reference_backward.
$(E2E)/check_grad.o: tests/check_grad.c tests/e2e_inputs.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fopenmp -Iruntime $(CHECK_CFLAGS) -c $< -o $@
$(E2E)/grad_%: $(E2E)/check_grad.o $(E2E)/%/cases.o $(E2E)/%/cases_table.o $(LIBPA)
	$(CC) $(CFLAGS) $^ $(CHECK_LIBS) -fopenmp -lm -o $@

# K_call (polyattn.h, pa_call) of kernels of every plan against
# pa_reference_call and the plain entry points.
$(E2E)/call/cases.poly $(E2E)/call/cases_table.c: tests/e2e/polys_call.txt tests/e2e/mkcases.sh
	sh tests/e2e/mkcases.sh tests/e2e/polys_call.txt "3" "5 16" $(E2E)/call
$(E2E)/check_call.o: tests/check_call.c tests/rnd.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iruntime $(CHECK_CFLAGS) -c $< -o $@
$(E2E)/check_call: $(E2E)/check_call.o $(E2E)/call/cases.o $(E2E)/call/cases_table.o $(LIBPA)
	$(CC) $(CFLAGS) $^ $(CHECK_LIBS) -fopenmp -lm -o $@
# The same suite on masked kernels of every exact plan.
$(E2E)/call_masked/cases.poly $(E2E)/call_masked/cases_table.c: tests/e2e/polys_call_masked.txt tests/e2e/mkcases.sh
	sh tests/e2e/mkcases.sh tests/e2e/polys_call_masked.txt "3" "5" $(E2E)/call_masked
$(E2E)/check_call_masked: $(E2E)/check_call.o $(E2E)/call_masked/cases.o $(E2E)/call_masked/cases_table.o $(LIBPA)
	$(CC) $(CFLAGS) $^ $(CHECK_LIBS) -fopenmp -lm -o $@

# The tree kernels' entry points with fewer queries than keys (run_qk,
# train_qk, backward_qk), called directly, against pa_reference_call.
$(E2E)/qk/cases.poly $(E2E)/qk/cases_table.c: tests/e2e/polys_qk.txt tests/e2e/mkcases.sh
	sh tests/e2e/mkcases.sh tests/e2e/polys_qk.txt "3 16" "5" $(E2E)/qk
$(E2E)/check_qk.o: tests/check_qk.c tests/rnd.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iruntime $(CHECK_CFLAGS) -c $< -o $@
$(E2E)/check_qk: $(E2E)/check_qk.o $(E2E)/qk/cases.o $(E2E)/qk/cases_table.o $(LIBPA)
	$(CC) $(CFLAGS) $^ $(CHECK_LIBS) -fopenmp -lm -o $@

# The same entry points of exact elimination kernels.
$(E2E)/qk_elim/cases.poly $(E2E)/qk_elim/cases_table.c: tests/e2e/polys_qk_elim.txt tests/e2e/mkcases.sh
	sh tests/e2e/mkcases.sh tests/e2e/polys_qk_elim.txt "3 16" "5 17" $(E2E)/qk_elim
$(E2E)/check_qk_elim.o: tests/check_qk_elim.c tests/rnd.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iruntime $(CHECK_CFLAGS) -c $< -o $@
$(E2E)/check_qk_elim: $(E2E)/check_qk_elim.o $(E2E)/qk_elim/cases.o $(E2E)/qk_elim/cases_table.o $(LIBPA)
	$(CC) $(CFLAGS) $^ $(CHECK_LIBS) -fopenmp -lm -o $@

# Every tree set runs once per code path (PA_ISA forces it; a path this CPU
# lacks falls back to the widest it has).
ISAS = generic avx2 avx512
# The backward splits an edge over key panels with a query-side
# accumulator per thread (the elimination backward sums per-thread
# copies): 1 and 2 threads take different paths.
GRAD_THREADS = 1 2
# The approximate engine on networks built by hand, against pa_reference.
$(E2E)/check_approx_engine: tests/check_approx_engine.c $(LIBPA)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fopenmp -Iruntime $< $(LIBPA) -lm -o $@

e2e: $(E2E_SETS:%=$(E2E)/check_%) $(E2E)/check_approx $(E2E)/check_approx_engine $(E2E)/check_approx_grad \
     $(TREE_HEAD_DIMS:%=$(E2E)/grad_tree_h%) $(E2E)/check_wide $(E2E)/grad_wide \
     $(E2E)/grad_general $(E2E)/check_call $(E2E)/check_call_masked $(E2E)/check_masked $(E2E)/grad_masked \
     $(E2E)/check_masked_general $(E2E)/grad_masked_general \
     $(E2E)/check_approx_masked $(E2E)/grad_approx_masked $(E2E)/check_qk $(E2E)/check_qk_elim
	echo "e2e wide"; $(E2E)/check_wide && $(E2E)/grad_wide
	for i in $(ISAS); do for s in $(TREE_HEAD_DIMS:%=tree_h%); do \
	  echo "e2e $$s, PA_ISA=$$i"; PA_ISA=$$i $(E2E)/check_$$s || exit 1; done; done
	for i in $(ISAS); do for t in $(GRAD_THREADS); do for s in $(TREE_HEAD_DIMS:%=tree_h%); do \
	  echo "grad $$s, PA_ISA=$$i, $$t thread(s)"; \
	  PA_ISA=$$i OMP_NUM_THREADS=$$t $(E2E)/grad_$$s || exit 1; done; done; done
	for i in $(ISAS); do for t in $(GRAD_THREADS); do \
	  echo "e2e masked, PA_ISA=$$i, $$t thread(s)"; \
	  PA_ISA=$$i OMP_NUM_THREADS=$$t $(E2E)/check_masked || exit 1; \
	  PA_ISA=$$i OMP_NUM_THREADS=$$t GRAD_BUDGET=2e7 $(E2E)/grad_masked || exit 1; done; done
	for i in $(ISAS); do echo "e2e general, PA_ISA=$$i"; \
	  PA_ISA=$$i $(E2E)/check_general || exit 1; \
	  PA_ISA=$$i $(E2E)/check_masked_general || exit 1; done
	for i in $(ISAS); do for t in $(GRAD_THREADS); do \
	  echo "grad general and masked general, PA_ISA=$$i, $$t thread(s)"; \
	  PA_ISA=$$i OMP_NUM_THREADS=$$t $(E2E)/grad_general || exit 1; \
	  PA_ISA=$$i OMP_NUM_THREADS=$$t $(E2E)/grad_masked_general || exit 1; done; done
	for i in $(ISAS); do echo "e2e approx, PA_ISA=$$i"; \
	  PA_ISA=$$i $(E2E)/check_approx_engine || exit 1; \
	  PA_ISA=$$i $(E2E)/check_approx || exit 1; done
	for i in $(ISAS); do for t in $(GRAD_THREADS); do \
	  echo "call, PA_ISA=$$i, $$t thread(s)"; \
	  PA_ISA=$$i OMP_NUM_THREADS=$$t $(E2E)/check_call || exit 1; \
	  PA_ISA=$$i OMP_NUM_THREADS=$$t $(E2E)/check_call_masked || exit 1; done; done
	for i in $(ISAS); do for t in $(GRAD_THREADS); do \
	  echo "qk, PA_ISA=$$i, $$t thread(s)"; \
	  PA_ISA=$$i OMP_NUM_THREADS=$$t $(E2E)/check_qk || exit 1; \
	  PA_ISA=$$i OMP_NUM_THREADS=$$t $(E2E)/check_qk_elim || exit 1; done; done
	for i in $(ISAS); do for t in $(GRAD_THREADS); do \
	  echo "grad approx, PA_ISA=$$i, $$t thread(s)"; \
	  PA_ISA=$$i OMP_NUM_THREADS=$$t $(E2E)/check_approx_grad || exit 1; done; done
	for i in $(ISAS); do for t in $(GRAD_THREADS); do \
	  echo "approx masked, PA_ISA=$$i, $$t thread(s)"; \
	  PA_ISA=$$i OMP_NUM_THREADS=$$t $(E2E)/check_approx_masked || exit 1; \
	  PA_ISA=$$i OMP_NUM_THREADS=$$t $(E2E)/grad_approx_masked || exit 1; done; done

# --- golden diagnostics: tests/diag/NAME.poly must fail as NAME.err says
diag: $(POLYC)
	sh tests/diag/run.sh $(POLYC) tests/diag

# --- polyc as a command: a missing or failing clang, interruption, -o -
cli: $(POLYC)
	sh tests/cli/run.sh $(POLYC)

# --- generated/: the C polyc emits for every example, kept readable in git
GENERATED = $(EXAMPLES:%=generated/%.c)
generated: $(POLYC)
	@mkdir -p generated
	for e in $(EXAMPLES); do $(POLYC) examples/$$e.poly -S -o generated/$$e.c || exit 1; done

check-generated: $(POLYC)
	@mkdir -p $(B)/generated
	@for e in $(EXAMPLES); do \
	  $(POLYC) examples/$$e.poly -S -o $(B)/generated/$$e.c || exit 1; \
	  cmp -s $(B)/generated/$$e.c generated/$$e.c || \
	    { echo "generated/$$e.c is stale: run 'make generated'"; exit 1; }; \
	done; echo "generated/ is up to date"

# --- examples: NAME.poly → kernel object and header, NAME.c → program
$(B)/examples/%.o: examples/%.poly $(POLYC)
	@mkdir -p $(@D)
	$(POLYC) $< -c -o $@
$(B)/examples/%.h: examples/%.poly $(POLYC)
	@mkdir -p $(@D)
	$(POLYC) $< --emit=h -o $@
$(B)/examples/%.main.o: examples/%.c $(B)/examples/%.h
	$(CC) $(CFLAGS) -Iruntime -Iexamples -I$(B)/examples -c $< -o $@
$(B)/examples/example_main.o: examples/example_main.c examples/example.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iruntime -Iexamples -c $< -o $@
$(B)/examples/%: $(B)/examples/%.main.o $(B)/examples/example_main.o $(B)/examples/%.o $(LIBPA)
	$(CC) $(CFLAGS) $^ -fopenmp -lm -o $@

# Gradient steps with the compose2 kernel (doc/training.md); fails
# unless the loss goes down.
$(B)/examples/train_compose2: examples/train_compose2.c $(B)/examples/compose2.h \
                              $(B)/examples/compose2.o $(LIBPA)
	$(CC) $(CFLAGS) -Iruntime -I$(B)/examples examples/train_compose2.c \
	    $(B)/examples/compose2.o $(LIBPA) -fopenmp -lm -o $@

examples: $(EXAMPLES:%=$(B)/examples/%) $(B)/examples/train_compose2

train-example: $(B)/examples/train_compose2
	$(B)/examples/train_compose2

run: $(B)/examples/compose2
	$(POLYC) examples/compose2.poly --explain
	$(B)/examples/compose2 1024 --check

# --- benchmarks (figures, not tests): make bench
$(B)/bench/%.o: bench/%.poly $(POLYC)
	@mkdir -p $(@D)
	$(POLYC) $< -c -o $@
$(B)/bench/%.h: bench/%.poly $(POLYC)
	@mkdir -p $(@D)
	$(POLYC) $< --emit=h -o $@
$(B)/bench/bench_tree: bench/bench_tree.c bench/peak.c $(B)/bench/tree.o $(B)/bench/tree.h $(LIBPA)
	$(CC) $(CFLAGS) -O3 -fopenmp -Iruntime -Ibench -I$(B)/bench bench/bench_tree.c bench/peak.c \
	    $(B)/bench/tree.o $(LIBPA) -lm -o $@

# Exact kernels of cyclic and high-degree graphs beside OpenBLAS sgemm
# (Debian's libopenblas-dev, for comparison only: make bench-general).
$(B)/bench/bench_general: bench/bench_general.c bench/peak.c $(B)/bench/general.o $(B)/bench/general.h $(LIBPA)
	$(CC) $(CFLAGS) -O3 -fopenmp -Iruntime -Ibench -I$(B)/bench $$(pkg-config --cflags openblas) \
	    bench/bench_general.c bench/peak.c $(B)/bench/general.o $(LIBPA) $$(pkg-config --libs openblas) -lm -o $@

bench-general:
	@pkg-config --exists openblas || { echo "make bench-general needs OpenBLAS: apt-get install libopenblas-dev"; exit 1; }
	$(MAKE) $(B)/bench/bench_general
	$(B)/bench/bench_general

# Approximate kernels beside exact ones of the same polynomials.
$(B)/bench/bench_approx: bench/bench_approx.c $(B)/bench/approx.o $(B)/bench/approx.h $(LIBPA)
	$(CC) $(CFLAGS) -O3 -fopenmp -Iruntime -Ibench -I$(B)/bench bench/bench_approx.c \
	    $(B)/bench/approx.o $(LIBPA) -lm -o $@

bench-approx: $(B)/bench/bench_approx
	$(B)/bench/bench_approx
	@echo; echo "the cost model's crossovers (polyc --explain):"
	@$(POLYC) bench/approx.poly --explain | grep -E '^kernel .*_approx|^cost model'

bench: $(B)/bench/bench_tree
	sh bench/run.sh $(B)/bench

# make bench-large: the tree kernel of bench/large.poly at n up to 100,000,
# its seconds and peak RSS against the workspace formula of the README.
$(B)/bench/bench_large: bench/bench_large.c $(B)/bench/large.o $(B)/bench/large.h $(LIBPA)
	$(CC) $(CFLAGS) -fopenmp -Iruntime -I$(B)/bench bench/bench_large.c \
	    $(B)/bench/large.o $(LIBPA) -lm -o $@
bench-large: $(B)/bench/bench_large
	$(B)/bench/bench_large

# make bench-backward: K, K_train and K_backward of bench/backward.poly
# beside PyTorch autograd (when installed), gradients checked first, and
# the peak RSS of a tree backward at n = 100,000.
$(B)/bench/bench_backward: bench/bench_backward.c bench/peak.c $(B)/bench/backward.o \
                           $(B)/bench/backward.h $(B)/bench/approx_backward.o \
                           $(B)/bench/approx_backward.h $(LIBPA)
	$(CC) $(CFLAGS) -O3 -fopenmp -Iruntime -Ibench -I$(B)/bench bench/bench_backward.c bench/peak.c \
	    $(B)/bench/backward.o $(B)/bench/approx_backward.o $(LIBPA) -lm -o $@
bench-backward: $(B)/bench/bench_backward
	sh bench/run_backward.sh $(B)/bench
.PHONY: bench-backward

test: all unit diag cli e2e check-generated examples train-example check-install python-test

# --- the Python package: installed from a copy of python/ (setuptools
# builds inside the source it is given) into $(B)/python with pip
# --target, offline (no build isolation, no dependencies); then pytest
# python/tests against this tree's polyc.  Any pytest failure fails the
# target, exit status 5 (no test ran) included.
PYTHON = python3
python-test: all
	rm -rf $(B)/python $(B)/python-src && cp -R python $(B)/python-src
	$(PYTHON) -m pip install -q --root-user-action=ignore --no-build-isolation --no-deps \
	    --target $(B)/python $(B)/python-src
	POLYC=$(abspath $(POLYC)) PYTHONPATH=$(abspath $(B))/python \
	    $(PYTHON) -m pytest -q -p no:cacheprovider python/tests
.PHONY: python-test

# --- make paper: the seed paper's function-composition experiment and
# its cost table, with polyc's kernels doing the attention
# (examples/compose/paper.py): tables and plots into doc/paper/.
# QUICK=1: one seed at n = 10 (under 5 minutes on 2 cores) into
# $(B)/paper/, and a last line "compose: tree1 <acc> self1 <acc> self2 <acc>".
# The plots need matplotlib (sh scripts/deps.sh paper; run here if missing).
PAPER_OUT = $(if $(QUICK),$(B)/paper,doc/paper)
paper: all
	rm -rf $(B)/python $(B)/python-src && cp -R python $(B)/python-src
	$(PYTHON) -m pip install -q --root-user-action=ignore --no-build-isolation --no-deps \
	    --target $(B)/python $(B)/python-src
	@$(PYTHON) -c 'import matplotlib' 2>/dev/null || sh scripts/deps.sh paper
	POLYC=$(abspath $(POLYC)) PYTHONPATH=$(abspath $(B))/python \
	    $(PYTHON) examples/compose/paper.py $(if $(QUICK),--quick) --out $(PAPER_OUT)
.PHONY: paper

# --- robustness: the front end under libFuzzer, the suites under
# AddressSanitizer and UndefinedBehaviorSanitizer (clang's compiler-rt).
# Each builds everything into its own directory under $(B).
SAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
FUZZ_SECONDS = 60
FUZZ_ARGS = -max_len=4096 -dict=tests/fuzz/poly.dict
$(B)/fuzz_parse: tests/fuzz/fuzz_parse.c $(B)/libpolyc.a
	$(CC) $(CFLAGS) $(CPPFLAGS) -fsanitize=fuzzer $(filter %.c %.a,$^) -lm -o $@

# make fuzz FUZZ_SECONDS=600: fuzz for that long from tests/fuzz/corpus;
# new inputs go to $(B)/fuzz/corpus, a crashing one to $(B)/fuzz/crash-*.
fuzz:
	$(MAKE) B=$(B)/fuzz CFLAGS='$(CFLAGS) $(SAN_FLAGS) -fsanitize=fuzzer-no-link' \
	    $(B)/fuzz/fuzz_parse
	@mkdir -p $(B)/fuzz/corpus
	$(B)/fuzz/fuzz_parse $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) \
	    -print_final_stats=1 -artifact_prefix=$(B)/fuzz/ \
	    $(B)/fuzz/corpus tests/fuzz/corpus

# make sanitize: polyc, the runtime, the unit suites and the kernels under
# ASan and UBSan (kernels through polyc -Xcc); any report fails the run.
# The e2e part runs one tree set and the general sets, in one process each
# (LeakSanitizer checks once, at exit, not in 300 forked children that
# still run OpenMP threads); kernels build at -O0
# (at -O3 UBSan's checks make clang take 10 s or more per kernel).
SAN_POLYC_FLAGS = -O0 -Xcc -fsanitize=address,undefined \
                  -Xcc -fno-sanitize-recover=all -Xcc -fno-omit-frame-pointer
sanitize:
	$(MAKE) B=$(B)/san CFLAGS='$(CFLAGS) $(SAN_FLAGS)' \
	    POLYC_FLAGS='$(SAN_POLYC_FLAGS)' sanitize-run

sanitize-run: all $(B)/check_unit $(E2E)/check_tree_h3 $(E2E)/check_general $(E2E)/check_approx \
              $(E2E)/check_approx_engine $(E2E)/grad_tree_h3 $(E2E)/grad_general $(E2E)/check_call \
              $(E2E)/check_call_masked $(E2E)/check_approx_grad $(E2E)/grad_masked_general \
              $(E2E)/check_approx_masked $(E2E)/check_qk $(E2E)/check_qk_elim
	$(B)/check_unit
	sh tests/diag/run.sh $(POLYC) tests/diag
	sh tests/cli/run.sh $(POLYC)
	CK_FORK=no $(E2E)/check_tree_h3
	CK_FORK=no GRAD_BUDGET=4e6 $(E2E)/grad_tree_h3
	CK_FORK=no $(E2E)/check_general
	CK_FORK=no GRAD_BUDGET=4e6 $(E2E)/grad_general
	CK_FORK=no GRAD_BUDGET=4e6 $(E2E)/grad_masked_general
	CK_FORK=no $(E2E)/check_approx
	CK_FORK=no $(E2E)/check_approx_masked
	CK_FORK=no $(E2E)/check_call
	CK_FORK=no $(E2E)/check_call_masked
	CK_FORK=no $(E2E)/check_qk
	CK_FORK=no $(E2E)/check_qk_elim
	$(E2E)/check_approx_engine
	CK_FORK=no $(E2E)/check_approx_grad

# --- install: a compiler's layout; polyc finds its headers through
# <prefix>/include/polyc next to <prefix>/bin.
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION  = $(shell sed -n 's/^#define POLYC_VERSION "\(.*\)"/\1/p' compiler/polyc.h)
RUNTIME_HEADERS = runtime/polyattn.h runtime/pa_kernel.h runtime/pa_simd.h runtime/pa_math.h runtime/pa_approx.h \
                  runtime/pa_elim.h runtime/pa_tree.h
I = $(DESTDIR)$(PREFIX)
# The OpenMP runtime clang's -fopenmp links (libomp): the package names it
# by its path, so programs link with gcc, g++ or clang alike.
OMP_LIB = $(shell sh scripts/omp_lib.sh $(CC))
OMP_SED = -e 's|@OMP_LIB@|$(OMP_LIB)|' -e 's|@OMP_DIR@|$(dir $(OMP_LIB))|'

install: all
	install -d $(I)/bin $(I)/include/polyc $(I)/lib/pkgconfig \
	    $(I)/lib/cmake/polyc $(I)/share/man/man1
	install -m 755 $(POLYC) $(I)/bin/polyc
	install -m 644 $(RUNTIME_HEADERS) $(I)/include/polyc/
	install -m 644 $(LIBPA) $(I)/lib/libpolyattn.a
	@test -n "$(OMP_LIB)" || { echo "make install: $(CC) -fopenmp links no OpenMP runtime (apt-get install libomp-dev)"; exit 1; }
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $(OMP_SED) \
	    dist/polyattn.pc.in > $(I)/lib/pkgconfig/polyattn.pc
	sed $(OMP_SED) dist/polycConfig.cmake.in > $(I)/lib/cmake/polyc/polycConfig.cmake
	sed -e 's|@VERSION@|$(VERSION)|' -e 's|@VERSION_MAJOR@|$(firstword $(subst ., ,$(VERSION)))|' \
	    dist/polycConfigVersion.cmake.in > $(I)/lib/cmake/polyc/polycConfigVersion.cmake
	install -m 644 doc/polyc.1 $(I)/share/man/man1/polyc.1

# Install into a temporary prefix and build the examples from outside the
# tree, once with make and pkg-config, once with CMake.
check-install: all
	sh tests/install/run.sh

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
.SECONDARY:
