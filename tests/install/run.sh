#!/bin/sh
# run.sh - install polyc into a temporary prefix and build the examples
# outside the source tree: once with examples/Makefile (pattern rules,
# pkg-config), once with CMake (find_package(polyc), polyc_add_kernel),
# and run each program with --check.  Run from the top of the tree (make
# check-install); exits non-zero on the first failure.
set -eu
top=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/polyc-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

make -s install PREFIX="$prefix"
export PATH="$prefix/bin:$PATH"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
unset POLYC_INCLUDE_DIR

echo "check-install: polyc $(polyc --version | cut -d' ' -f2) in $prefix"
! command -v man >/dev/null || man -l "$prefix/share/man/man1/polyc.1" >/dev/null 2>&1 ||
	{ echo "check-install: man page does not render"; exit 1; }

# what clang made of a kernel, and the dependency file
polyc examples/compose2.poly --emit=asm -o "$work/k.s"
grep -q 'compose2_info' "$work/k.s" || { echo "check-install: --emit=asm"; exit 1; }
polyc examples/compose2.poly --emit=llvm -o "$work/k.ll"
grep -q '^define.*@compose2(' "$work/k.ll" || { echo "check-install: --emit=llvm"; exit 1; }
polyc examples/compose2.poly -c -o "$work/k.o" -MD -MF "$work/k.d"
grep -q "^$work/k.o: examples/compose2.poly" "$work/k.d" ||
	{ echo "check-install: -MD -MF"; cat "$work/k.d"; exit 1; }

# make with pattern rules and pkg-config
mkdir "$work/make"
cp examples/*.poly examples/*.c examples/example.h examples/Makefile "$work/make/"
make -s -C "$work/make"
for p in self_attention compose2 compose3 star strassen; do
	"$work/make/$p" 200 2 --check | tail -n 1
done
# a second make does nothing: the dependency files are right
if make -C "$work/make" -q; then :; else
	echo "check-install: make rebuilds what is up to date"; exit 1
fi
touch "$work/make/compose2.poly"
make -C "$work/make" -q && { echo "check-install: a touched .poly is not rebuilt"; exit 1; }

# CMake through the installed package
mkdir -p "$work/cmake/src/cmake"
cp examples/compose2.poly examples/compose2.c examples/example_main.c \
   examples/example.h "$work/cmake/src/"
cp examples/cmake/CMakeLists.txt "$work/cmake/src/cmake/"
CC=clang cmake -S "$work/cmake/src/cmake" -B "$work/cmake/build" \
	-DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake/build" >/dev/null
"$work/cmake/build/compose2" 200 --check | tail -n 1
echo "check-install: ok"
cd "$top"
