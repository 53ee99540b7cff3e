#!/bin/sh
# omp_lib.sh - print the path of the OpenMP runtime that CC -fopenmp
# links (clang: libomp), so that programs linking polyc kernels with
# another compiler (gcc, g++) link the same one: make install writes it
# into polyattn.pc and polycConfig.cmake.
#
#   sh scripts/omp_lib.sh [CC]           (default clang)
set -eu
cc=${1:-clang}
dir=$(mktemp -d "${TMPDIR:-/tmp}/omp_lib.XXXXXX")
trap 'rm -rf "$dir"' EXIT
printf 'int omp_get_max_threads(void);\nint main(void) { return omp_get_max_threads() < 0; }\n' >"$dir/t.c"
lib=$("$cc" -fopenmp "$dir/t.c" -o "$dir/t" -Wl,--trace 2>/dev/null |
	grep -E '/lib(g?omp|iomp5)[^/]*\.so' | head -n 1)
[ -n "$lib" ] || { echo "omp_lib.sh: $cc -fopenmp links no OpenMP runtime" >&2; exit 1; }
readlink -f "$lib"
