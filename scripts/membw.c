/* The machine figures behind the "physical limit" column of BENCHMARKS.md: sequential read bandwidth
 * (one and two threads), independent random 8-byte reads, memcpy, a 1 GB file write with fsync, and
 * the fsync of a 4 KB write. Not part of the build:
 *   gcc -O2 -pthread scripts/membw.c -o /tmp/membw && /tmp/membw
 * Uses 2 GiB of memory and 1 GB in /tmp (removed). */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t *a;
static size_t n;
static int threads;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *seq(void *p) {
    size_t i = (size_t)p, lo = n / threads * i, hi = n / threads * (i + 1);
    uint64_t s = 0;
    for (size_t j = lo; j < hi; j++) s += a[j];
    return (void *)s;
}

static void *rnd(void *p) {
    uint64_t s = 0, x = (size_t)p * 7 + 1;
    for (size_t j = 0; j < n / threads / 8; j++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        s += a[(x >> 20) % n];
    }
    return (void *)s;
}

static double run(void *(*f)(void *), int t) {
    pthread_t th[2];
    threads = t;
    double start = now();
    for (int i = 0; i < t; i++) pthread_create(&th[i], 0, f, (void *)(size_t)i);
    for (int i = 0; i < t; i++) pthread_join(th[i], 0);
    return now() - start;
}

int main(void) {
    n = (size_t)1 << 28;
    a = malloc(n * 8);
    if (!a) return 1;
    for (size_t i = 0; i < n; i++) a[i] = i;
    for (int t = 1; t <= 2; t++) {
        double best = 1e9;
        for (int r = 0; r < 3; r++) {
            double d = run(seq, t);
            if (d < best) best = d;
        }
        printf("sequential read, %d thread(s): %.1f GB/s\n", t, n * 8 / best / 1e9);
    }
    for (int t = 1; t <= 2; t++)
        printf("independent random 8-byte reads, %d thread(s): %.1f ns each\n", t,
               run(rnd, t) * 1e9 / (n / 8));
    double start = now();
    memcpy(a, a + n / 2, n * 4);
    printf("memcpy: %.1f GB/s copied\n", n * 4 / (now() - start) / 1e9);
    const char *path = "/tmp/membw.dat";
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) return 1;
    start = now();
    for (int i = 0; i < 4; i++)
        if (write(fd, a, (size_t)256 << 20) < 0) return 1;
    fsync(fd);
    printf("file write of 1 GB, then fsync: %.2f GB/s\n", 1.0 / (now() - start));
    double best = 1e9;
    for (int i = 0; i < 20; i++) {
        if (write(fd, a, 4096) < 0) return 1;
        start = now();
        fsync(fd);
        double d = now() - start;
        if (d < best) best = d;
    }
    printf("fsync after a 4 KB write: %.2f ms (best of 20)\n", best * 1e3);
    close(fd);
    unlink(path);
    return 0;
}
