/* Physical ceilings of the disk the benchmark runs on, measured the way n2s and its peers use
 * it: creating many small files (from one and two threads, directly or as a temporary file
 * renamed into place), making a batch of them durable with one syncfs, creating files right
 * after many were deleted, and writing one large file sequentially with an fsync at the end
 * (through the page cache and with O_DIRECT). scripts/bench.ts --ceilings builds and runs it;
 * each line printed is one JSON object.
 *
 * usage: ceilings DIR [FILES] [WRITE_MIB] */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec +
         r.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
  fprintf(stderr, "ceilings: %s: %s\n", what, strerror(errno));
  exit(1);
}

struct job {
  const char *root;
  int first, step, count, size, rename_mode;
  const char *data;
};

static void *create_files(void *arg) {
  struct job *j = arg;
  char path[4096], tmp[4200];
  for (int i = j->first; i < j->count; i += j->step) {
    snprintf(path, sizeof path, "%s/%02x/f%07d", j->root, i % 256, i);
    const char *target = path;
    if (j->rename_mode) {
      snprintf(tmp, sizeof tmp, "%s.tmp", path);
      target = tmp;
    }
    int fd = open(target, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) die("open");
    if (j->size && write(fd, j->data, j->size) != j->size) die("write");
    close(fd);
    if (j->rename_mode && rename(tmp, path)) die("rename");
  }
  return NULL;
}

static void make_dirs(const char *root) {
  char d[4096];
  if (mkdir(root, 0755) && errno != EEXIST) die("mkdir");
  for (int i = 0; i < 256; i++) {
    snprintf(d, sizeof d, "%s/%02x", root, i);
    if (mkdir(d, 0755) && errno != EEXIST) die("mkdir");
  }
}

/* Creates `count` files under a fresh `root` with `threads` threads; prints µs per file. */
static void create_run(const char *label, const char *root, int count, int size, int threads,
                       int rename_mode, const char *data) {
  make_dirs(root);
  pthread_t th[8];
  struct job jobs[8];
  double t0 = now(), c0 = cpu();
  for (int k = 0; k < threads; k++) {
    jobs[k] = (struct job){root, k, threads, count, size, rename_mode, data};
    pthread_create(&th[k], NULL, create_files, &jobs[k]);
  }
  for (int k = 0; k < threads; k++) pthread_join(th[k], NULL);
  double t1 = now(), c1 = cpu();
  int fd = open(root, O_RDONLY);
  double s0 = now();
  syncfs(fd);
  double s1 = now();
  close(fd);
  printf("{\"test\":\"%s\",\"files\":%d,\"size\":%d,\"threads\":%d,\"rename\":%d,"
         "\"wall_us_per_file\":%.1f,\"cpu_us_per_file\":%.1f,\"syncfs_s\":%.3f}\n",
         label, count, size, threads, rename_mode, (t1 - t0) / count * 1e6,
         (c1 - c0) / count * 1e6, s1 - s0);
  fflush(stdout);
}

/* Deletes the files and directories of a tree made by create_run, like rm -rf. */
static void remove_tree(const char *root, int count) {
  char path[4096];
  for (int i = 0; i < count; i++) {
    snprintf(path, sizeof path, "%s/%02x/f%07d", root, i % 256, i);
    unlink(path);
  }
  for (int i = 0; i < 256; i++) {
    snprintf(path, sizeof path, "%s/%02x", root, i);
    rmdir(path);
  }
  rmdir(root);
}

/* Writes `mib` MiB sequentially in 1 MiB writes, then fsync; prints MB/s. */
static void write_run(const char *label, const char *path, int mib, int direct) {
  char *buf;
  if (posix_memalign((void **)&buf, 4096, 1 << 20)) die("memalign");
  for (int i = 0; i < (1 << 20); i++) buf[i] = (char)(i * 131 + 7);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | (direct ? O_DIRECT : 0), 0644);
  if (fd < 0) die("open for write");
  double t0 = now(), c0 = cpu();
  for (int i = 0; i < mib; i++) {
    if (write(fd, buf, 1 << 20) != (1 << 20)) die("write");
  }
  double t1 = now();
  fsync(fd);
  double t2 = now(), c2 = cpu();
  close(fd);
  unlink(path);
  free(buf);
  double mb = mib * 1048576.0 / 1e6;
  printf("{\"test\":\"%s\",\"mib\":%d,\"write_s\":%.3f,\"fsync_s\":%.3f,\"mb_per_s\":%.1f,"
         "\"cpu_s\":%.3f}\n",
         label, mib, t1 - t0, t2 - t1, mb / (t2 - t0), c2 - c0);
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: ceilings DIR [FILES] [WRITE_MIB]\n");
    return 2;
  }
  const char *dir = argv[1];
  int files = argc > 2 ? atoi(argv[2]) : 10000;
  int mib = argc > 3 ? atoi(argv[3]) : 1024;
  if (mkdir(dir, 0755) && errno != EEXIST) die("mkdir");
  static char data[16384];
  memset(data, 'x', sizeof data);
  char root[4096];
  const int size = 8704; /* the mean size of the `small` dataset */
  snprintf(root, sizeof root, "%s/c1", dir);
  create_run("create", root, files, size, 1, 0, data);
  snprintf(root, sizeof root, "%s/c2", dir);
  create_run("create", root, files, size, 2, 0, data);
  snprintf(root, sizeof root, "%s/r1", dir);
  create_run("create", root, files, size, 1, 1, data);
  snprintf(root, sizeof root, "%s/r2", dir);
  create_run("create", root, files, size, 2, 1, data);
  /* Deleting many files makes the next creations slow for a while on ext4 without a journal
   * (the inode allocator skips recently deleted inodes, reading their inode table blocks). */
  snprintf(root, sizeof root, "%s/c1", dir);
  remove_tree(root, files);
  snprintf(root, sizeof root, "%s/c2", dir);
  remove_tree(root, files);
  sync();
  snprintf(root, sizeof root, "%s/d1", dir);
  create_run("create-after-delete", root, files, size, 1, 0, data);
  snprintf(root, sizeof root, "%s/d2", dir);
  create_run("create-after-delete", root, files, size, 2, 0, data);
  char path[4096];
  snprintf(path, sizeof path, "%s/big.bin", dir);
  write_run("write-fsync", path, mib, 0);
  write_run("write-direct", path, mib, 1);
  return 0;
}
