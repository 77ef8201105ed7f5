# Cross-compiling for arm64 (aarch64, e.g. the Grace CPUs of p6e-gb200) on an x86-64 Debian
# with multiarch: the target's -dev packages installed as :arm64 (scripts/apt-install-for-target.sh),
# the cross compilers from crossbuild-essential-arm64.
#
#   cmake -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake ...
#
# Libraries and headers are the target's (/usr/lib/aarch64-linux-gnu, the arch-independent
# /usr/include); programs the build runs (protoc, grpc_cpp_plugin) are the build machine's.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
# pkg-config is the build machine's; it must read the target's .pc files only (the native
# ones, if any -dev package is also installed natively, would give x86-64 libraries).
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
# With qemu-user present, ctest and gtest_discover_tests run the target's test binaries
# through it (the build machine's kernel cannot exec them without a binfmt_misc entry).
find_program(EFADRA_QEMU_AARCH64 qemu-aarch64-static)
if(EFADRA_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${EFADRA_QEMU_AARCH64})
endif()
