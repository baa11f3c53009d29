/* A slower disk for benchmarks (scripts/bench-ingest.sh SLOW_FSYNC_US=N): preloaded into a
 * server, it sleeps SLOW_FSYNC_US microseconds (default 2000) before each fsync and fdatasync,
 * as a disk whose flush takes that long would. Build: cc -shared -fPIC -O2 -o slow-fsync.so
 * slow-fsync.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static void slow(void) {
    const char *s = getenv("SLOW_FSYNC_US");
    long us = s ? atol(s) : 2000;
    struct timespec t = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&t, 0);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    slow();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    slow();
    return real(fd);
}
