#!/bin/sh
# run.sh - install polyc into a temporary prefix and build the examples
# outside the source tree: with examples/Makefile (pattern rules,
# pkg-config), once linked by clang and once by gcc; and with CMake
# (find_package(polyc), polyc_add_kernel): a C project with clang, one
# with gcc (Debian's default compiler), a C++-only project, and one with
# the Ninja generator.  Each program runs with --check, and a second
# build of each must do nothing.  Run from the top of the tree (make
# check-install); exits non-zero on the first failure.  CMAKE names the
# cmake to use (default cmake; the package needs 3.20 or later).
set -eu
cmake=${CMAKE:-cmake}
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
# the same programs linked by gcc through pkg-config's Libs
make -s -C "$work/make" clean
make -s -C "$work/make" CC=gcc compose2 strassen
"$work/make/compose2" 200 2 --check | tail -n 1
"$work/make/strassen" 200 2 --check | tail -n 1

# cmake_case NAME SRC CC CXX GENERATOR PROGRAM POLY: configure the
# project in SRC with that compiler and generator (CMake's default when
# empty), build it, run PROGRAM, check that a second build does nothing
# and that one after touching POLY runs polyc again.
cmake_case() {
	name=$1 src=$2 cc=$3 cxx=$4 gen=$5 prog=$6 poly=$7
	b="$work/cmake/$name"
	CC=$cc CXX=$cxx "$cmake" -S "$src" -B "$b" ${gen:+-G "$gen"} \
		-DCMAKE_PREFIX_PATH="$prefix" >"$b.log" 2>&1 ||
		{ echo "check-install: cmake $name:"; cat "$b.log"; exit 1; }
	"$cmake" --build "$b" >>"$b.log" 2>&1 ||
		{ echo "check-install: cmake --build $name:"; cat "$b.log"; exit 1; }
	echo "cmake $name: $("$b/$prog" 200 --check | tail -n 1)"
	if [ "$gen" = Ninja ]; then again=$("$cmake" --build "$b" -- -d explain 2>&1)
	else again=$("$cmake" --build "$b" 2>&1); fi
	case $gen in
	Ninja) echo "$again" | grep -q "no work to do" ;;
	*) ! echo "$again" | grep -qE "\] polyc|Building|Linking" ;;
	esac || { echo "check-install: a second build of $name is not a no-op:"; echo "$again"; exit 1; }
	touch "$poly"
	"$cmake" --build "$b" 2>&1 | grep -q "\] polyc " ||
		{ echo "check-install: $name does not rebuild a touched .poly"; exit 1; }
}

# CMake through the installed package: the example's C project
mkdir -p "$work/cmake/src/cmake"
cp examples/compose2.poly examples/compose2.c examples/example_main.c \
   examples/example.h "$work/cmake/src/"
cp examples/cmake/CMakeLists.txt "$work/cmake/src/cmake/"
k="$work/cmake/src/compose2.poly"
cmake_case clang "$work/cmake/src/cmake" clang clang++ "" compose2 "$k"
cmake_case gcc "$work/cmake/src/cmake" gcc g++ "" compose2 "$k"
command -v ninja >/dev/null ||
	{ echo "check-install: needs ninja (apt-get install ninja-build)"; exit 1; }
cmake_case ninja "$work/cmake/src/cmake" gcc g++ Ninja compose2 "$k"
# a C++-only project (no C compiler enabled), calling a kernel from C++
mkdir -p "$work/cmake/cxx"
cp examples/compose2.poly "$work/cmake/cxx/"
cat >"$work/cmake/cxx/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.20)
project(polyc_cxx CXX)
find_package(polyc REQUIRED)
add_executable(cxx main.cpp)
polyc_add_kernel(cxx compose2.poly)
CMAKE
cat >"$work/cmake/cxx/main.cpp" <<'CXX'
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "compose2.h"
int main(int argc, char **argv)
{
	int64_t n = argc > 1 ? std::atol(argv[1]) : 100;
	const pa_kernel_info &k = compose2_info;
	std::vector<std::vector<float>> in(k.num_inputs);
	std::vector<const float *> ptr;
	for (int i = 0; i < k.num_inputs; i++) {
		in[i].resize(n * k.inputs[i].cols);
		for (size_t e = 0; e < in[i].size(); e++)
			in[i][e] = 0.01f * float((e * 37 + i) % 17) - 0.08f;
		ptr.push_back(in[i].data());
	}
	std::vector<float> out(n * k.value_dim);
	std::vector<double> ref(n * k.value_dim);
	if (compose2(1, n, ptr.data(), out.data()) != PA_OK ||
	    pa_reference(&k, 1, n, ptr.data(), ref.data()) != PA_OK)
		return 1;
	double err = 0;
	for (size_t e = 0; e < out.size(); e++)
		err = std::fmax(err, std::fabs(out[e] - ref[e]));
	std::printf("C++: max |out - reference| = %.2g\n", err);
	return err < 1e-4 ? 0 : 1;
}
CXX
cmake_case cxx "$work/cmake/cxx" gcc g++ "" cxx "$work/cmake/cxx/compose2.poly"
cmake_case cxx-ninja "$work/cmake/cxx" clang clang++ Ninja cxx "$work/cmake/cxx/compose2.poly"
echo "check-install: ok"
cd "$top"
