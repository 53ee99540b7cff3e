#!/bin/sh
# Installs what building and testing polyc needs on Debian or Ubuntu:
# make, flex, bison, clang with OpenMP, Check, pkg-config, CMake and Ninja
# (the installed-package check builds CMake projects with both the Makefile
# and the Ninja generator), and clang's sanitizer and
# libFuzzer runtimes (make sanitize, make fuzz); then, through pip, the
# Python packages make python-test needs (PyTorch, NumPy, pytest and
# setuptools); with the argument paper, matplotlib too (make paper's
# plots).  Packages already present are left alone; root or sudo is
# needed otherwise.
set -e
pkgs="make flex bison clang libomp-dev check pkg-config cmake ninja-build libclang-rt-dev"
python3 -m pip --version >/dev/null 2>&1 || pkgs="$pkgs python3-pip"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
fi
py_missing=""
mods="torch numpy pytest setuptools"
[ "${1:-}" = paper ] && mods="$mods matplotlib"
for m in $mods; do
	python3 -c "import $m" 2>/dev/null || py_missing="$py_missing $m"
done
[ -z "$py_missing" ] || python3 -m pip install $py_missing ||
	python3 -m pip install --break-system-packages $py_missing   # PEP 668 Debian
