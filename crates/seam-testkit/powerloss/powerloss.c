/*
 * powerloss: an LD_PRELOAD library that records what a process made durable, so a test can
 * replay a power loss on real files.
 *
 * The model is a disk with a volatile write cache: a file's contents survive a power loss only
 * as of its last fsync() or fdatasync() (on any descriptor of the file). sync_file_range(),
 * which flushes pages to the device but neither its cache nor the file's size, makes nothing
 * durable. Directory entries (create, rename, unlink) are taken as durable at once.
 *
 * Files under $SEAM_POWERLOSS_DIR are tracked. At each fsync/fdatasync the whole file is copied to
 * the same relative path under $SEAM_POWERLOSS_SHADOW. After the process is killed, the test
 * replaces every tracked file with its shadow (or empties it if it was never synced): what is
 * left is what a power loss would have left.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FDS 65536

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *paths[MAX_FDS];
static char dir[PATH_MAX];
static char shadow[PATH_MAX];
static int enabled = -1;

static void init(void) {
    if (enabled != -1) return;
    const char *d = getenv("SEAM_POWERLOSS_DIR");
    const char *s = getenv("SEAM_POWERLOSS_SHADOW");
    if (d && s && realpath(d, dir) && strlen(s) < PATH_MAX) {
        strcpy(shadow, s);
        enabled = 1;
    } else {
        enabled = 0;
    }
}

/* The absolute path of `path` (relative to dirfd) if it lies under the tracked folder. */
static char *tracked(int dirfd, const char *path) {
    char full[PATH_MAX], resolved[PATH_MAX];
    init();
    if (!enabled || !path) return NULL;
    if (path[0] == '/' || dirfd == AT_FDCWD) {
        if (path[0] == '/') snprintf(full, sizeof full, "%s", path);
        else {
            char cwd[PATH_MAX];
            if (!getcwd(cwd, sizeof cwd)) return NULL;
            snprintf(full, sizeof full, "%s/%s", cwd, path);
        }
    } else {
        return NULL;
    }
    /* The file may not exist yet: resolve its folder. */
    char *slash = strrchr(full, '/');
    if (!slash) return NULL;
    *slash = 0;
    if (!realpath(full, resolved)) return NULL;
    size_t n = strlen(dir);
    if (strncmp(resolved, dir, n) != 0 || (resolved[n] != 0 && resolved[n] != '/')) return NULL;
    char *out = malloc(PATH_MAX);
    snprintf(out, PATH_MAX, "%s/%s", resolved, slash + 1);
    return out;
}

static void remember(int fd, char *path) {
    if (fd < 0 || fd >= MAX_FDS) { free(path); return; }
    pthread_mutex_lock(&lock);
    free(paths[fd]);
    paths[fd] = path;
    pthread_mutex_unlock(&lock);
}

static void shadow_of(const char *path, char *out) {
    snprintf(out, PATH_MAX, "%s%s", shadow, path + strlen(dir));
}

static void mkdirs(const char *file) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", file);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0700);
            *p = '/';
        }
    }
}

static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);

/* Copies the file's current contents to its shadow. A folder's fsync makes its entries durable,
 * which this model takes as durable at once: there is nothing to copy (and a copy would stand
 * as a file where the folder's files must go). */
static void persist(int fd) {
    char target[PATH_MAX];
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) return;
    pthread_mutex_lock(&lock);
    char *path = (fd >= 0 && fd < MAX_FDS) ? paths[fd] : NULL;
    if (!path) { pthread_mutex_unlock(&lock); return; }
    shadow_of(path, target);
    pthread_mutex_unlock(&lock);
    if (!real_read) real_read = dlsym(RTLD_NEXT, "read");
    if (!real_write) real_write = dlsym(RTLD_NEXT, "write");
    int (*real_open)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
    mkdirs(target);
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", target);
    int in = real_open(path, O_RDONLY);
    int out = real_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in >= 0 && out >= 0) {
        char buf[1 << 16];
        ssize_t n;
        while ((n = real_read(in, buf, sizeof buf)) > 0) {
            if (real_write(out, buf, (size_t)n) != n) break;
        }
    }
    if (in >= 0) close(in);
    if (out >= 0) close(out);
    rename(tmp, target);
}

#define OPEN_MODE(flags, mode)                         \
    mode_t mode = 0;                                   \
    if ((flags) & (O_CREAT | O_TMPFILE)) {             \
        va_list ap;                                    \
        va_start(ap, flags);                           \
        mode = va_arg(ap, mode_t);                     \
        va_end(ap);                                    \
    }

int open(const char *path, int flags, ...) {
    OPEN_MODE(flags, mode);
    int (*real)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
    int fd = real(path, flags, mode);
    if (fd >= 0) { char *t = tracked(AT_FDCWD, path); if (t) remember(fd, t); }
    return fd;
}

int open64(const char *path, int flags, ...) {
    OPEN_MODE(flags, mode);
    int (*real)(const char *, int, ...) = dlsym(RTLD_NEXT, "open64");
    int fd = real(path, flags, mode);
    if (fd >= 0) { char *t = tracked(AT_FDCWD, path); if (t) remember(fd, t); }
    return fd;
}

int openat(int dirfd, const char *path, int flags, ...) {
    OPEN_MODE(flags, mode);
    int (*real)(int, const char *, int, ...) = dlsym(RTLD_NEXT, "openat");
    int fd = real(dirfd, path, flags, mode);
    if (fd >= 0) { char *t = tracked(dirfd, path); if (t) remember(fd, t); }
    return fd;
}

int openat64(int dirfd, const char *path, int flags, ...) {
    OPEN_MODE(flags, mode);
    int (*real)(int, const char *, int, ...) = dlsym(RTLD_NEXT, "openat64");
    int fd = real(dirfd, path, flags, mode);
    if (fd >= 0) { char *t = tracked(dirfd, path); if (t) remember(fd, t); }
    return fd;
}

int close(int fd) {
    int (*real)(int) = dlsym(RTLD_NEXT, "close");
    if (fd >= 0 && fd < MAX_FDS) {
        pthread_mutex_lock(&lock);
        free(paths[fd]);
        paths[fd] = NULL;
        pthread_mutex_unlock(&lock);
    }
    return real(fd);
}

int fsync(int fd) {
    int (*real)(int) = dlsym(RTLD_NEXT, "fsync");
    int r = real(fd);
    if (r == 0) persist(fd);
    return r;
}

int fdatasync(int fd) {
    int (*real)(int) = dlsym(RTLD_NEXT, "fdatasync");
    int r = real(fd);
    if (r == 0) persist(fd);
    return r;
}

int rename(const char *from, const char *to) {
    int (*real)(const char *, const char *) = dlsym(RTLD_NEXT, "rename");
    char *f = tracked(AT_FDCWD, from), *t = tracked(AT_FDCWD, to);
    int r = real(from, to);
    if (r == 0 && f && t) {
        char sf[PATH_MAX], st[PATH_MAX];
        shadow_of(f, sf);
        shadow_of(t, st);
        mkdirs(st);
        real(sf, st);
    }
    free(f);
    free(t);
    return r;
}

int unlink(const char *path) {
    int (*real)(const char *) = dlsym(RTLD_NEXT, "unlink");
    char *t = tracked(AT_FDCWD, path);
    int r = real(path);
    if (r == 0 && t) {
        char st[PATH_MAX];
        shadow_of(t, st);
        real(st);
    }
    free(t);
    return r;
}
