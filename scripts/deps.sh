#!/bin/sh
# Installs what building and testing polyc needs on Debian or Ubuntu:
# make, flex, bison, clang with OpenMP, Check, pkg-config and CMake (the
# installed-package check builds a CMake project), and clang's sanitizer and
# libFuzzer runtimes (make sanitize, make fuzz).  Packages already
# present are left alone; root or sudo is needed otherwise.
set -e
pkgs="make flex bison clang libomp-dev check pkg-config cmake libclang-rt-dev"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
