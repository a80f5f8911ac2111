// storage-dir: a storage plugin in C. Serves a directory the site grants it
// (a WASI preopen) as `/`, through plain POSIX calls that wasi-libc turns into
// WASI filesystem calls, and moves file data through the portable chunked
// path (the `reader` and `writer` resources).
//
// Configuration (the site's `storage.config`, read through wasi:config/store):
//
//   root   guest path of the granted directory to serve (default "/")
//
// Bindings come from `wit-bindgen c` (storage_plugin.h); see build.sh.

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage_plugin.h"

typedef exports_wasmftpd_plugin_storage_error_t plugin_error_t;
typedef exports_wasmftpd_plugin_storage_metadata_t plugin_metadata_t;

// Bounds what one read call allocates, whatever the host asks for.
#define MAX_CHUNK (1u << 20)

struct exports_wasmftpd_plugin_storage_reader_t {
  int fd;
  uint64_t position;
};

struct exports_wasmftpd_plugin_storage_writer_t {
  int fd;
  uint64_t position;
};

// ---- errors ---------------------------------------------------------------

static bool fail(plugin_error_t *err, wasmftpd_plugin_types_error_code_t code, const char *message) {
  err->code = code;
  err->message.is_some = message != NULL;
  if (message) {
    // The generated glue frees the message after the call returns.
    storage_plugin_string_dup(&err->message.val, message);
  }
  return false;
}

// Our error for the errno of a failed call. Only `io` carries the system's
// text: the other codes already say all a client needs.
static bool fail_errno(plugin_error_t *err, int e) {
  switch (e) {
    case ENOENT: return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_NOT_FOUND, NULL);
    case EACCES:
    case EPERM:
    case EROFS: return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_PERMISSION_DENIED, NULL);
    case EEXIST: return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_ALREADY_EXISTS, NULL);
    case ENOTDIR: return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_NOT_A_DIRECTORY, NULL);
    case EISDIR: return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IS_A_DIRECTORY, NULL);
    case ENOTEMPTY: return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_NOT_EMPTY, NULL);
    case EINVAL:
    case ENAMETOOLONG:
    case EILSEQ: return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_INVALID_NAME, NULL);
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_NO_SPACE, NULL);
    case ENOTSUP:
    case ENOSYS: return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_UNSUPPORTED, NULL);
    case EBUSY:
    case EAGAIN: return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_UNAVAILABLE, NULL);
    default: return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, strerror(e));
  }
}

// ---- configuration and paths ------------------------------------------------

// The served directory's guest path without a trailing slash ("" for "/"),
// read from the config on first use: one instance serves one session.
static char *root_prefix = NULL;

static bool load_root(plugin_error_t *err) {
  if (root_prefix) return true;
  storage_plugin_string_t key;
  storage_plugin_string_set(&key, "root");
  storage_plugin_option_string_t value;
  wasi_config_store_error_t config_err;
  if (!wasi_config_store_get(&key, &value, &config_err)) {
    wasi_config_store_error_free(&config_err);
    fprintf(stderr, "storage-dir: cannot read config key root\n");
    return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_UNAVAILABLE, "storage misconfigured; see the server log");
  }
  size_t len = value.is_some ? value.val.len : 0;
  char *prefix = malloc(len + 1);
  if (!prefix) return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, "out of memory");
  if (len) memcpy(prefix, value.val.ptr, len);
  prefix[len] = '\0';
  storage_plugin_option_string_free(&value);
  while (len > 0 && prefix[len - 1] == '/') prefix[--len] = '\0';
  struct stat st;
  if (stat(len ? prefix : "/", &st) != 0 || !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "storage-dir: no granted directory is named \"%s\" (config key root)\n", len ? prefix : "/");
    free(prefix);
    return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_UNAVAILABLE, "storage misconfigured; see the server log");
  }
  root_prefix = prefix;
  return true;
}

// Turns a virtual path into a NUL-terminated guest path (caller frees), or
// fails. The host has normalized the path already; anything odd is refused,
// not repaired.
static char *guest_path(const storage_plugin_string_t *path, plugin_error_t *err) {
  if (!load_root(err)) return NULL;
  const uint8_t *p = path->ptr;
  size_t n = path->len;
  if (n == 0 || p[0] != '/') {
    fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_INVALID_NAME, "path must be absolute");
    return NULL;
  }
  // Each segment between slashes must be non-empty and not "." or "..".
  for (size_t start = 1; n > 1 && start <= n; ) {
    size_t end = start;
    while (end < n && p[end] != '/') {
      if (p[end] == '\0') end = n + 1;  // NUL inside: force the error below
      else end++;
    }
    size_t seg = end - start;
    if (end > n || seg == 0 || (seg == 1 && p[start] == '.') ||
        (seg == 2 && p[start] == '.' && p[start + 1] == '.')) {
      fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_INVALID_NAME, "path is not normalized");
      return NULL;
    }
    start = end + 1;
  }
  size_t root_len = strlen(root_prefix);
  char *out = malloc(root_len + n + 1);
  if (!out) {
    fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, "out of memory");
    return NULL;
  }
  memcpy(out, root_prefix, root_len);
  memcpy(out + root_len, p, n);
  out[root_len + n] = '\0';
  if (root_len && n == 1) out[root_len] = '\0';  // "/" is the root itself
  return out;
}

static void fill_metadata(const struct stat *st, plugin_metadata_t *m) {
  if (S_ISREG(st->st_mode)) m->kind = WASMFTPD_PLUGIN_TYPES_ENTRY_KIND_FILE;
  else if (S_ISDIR(st->st_mode)) m->kind = WASMFTPD_PLUGIN_TYPES_ENTRY_KIND_DIRECTORY;
  else if (S_ISLNK(st->st_mode)) m->kind = WASMFTPD_PLUGIN_TYPES_ENTRY_KIND_SYMLINK;
  else m->kind = WASMFTPD_PLUGIN_TYPES_ENTRY_KIND_OTHER;
  m->size = (uint64_t)st->st_size;
  m->modified.is_some = true;
  m->modified.val.seconds = (int64_t)st->st_mtim.tv_sec;
  m->modified.val.nanoseconds = (uint32_t)st->st_mtim.tv_nsec;
  // WASI does not expose permission bits; the host enforces the grant's rights.
  m->readonly = false;
}

// ---- the storage interface --------------------------------------------------

bool exports_wasmftpd_plugin_storage_stat(storage_plugin_string_t *path, plugin_metadata_t *ret, plugin_error_t *err) {
  char *p = guest_path(path, err);
  storage_plugin_string_free(path);
  if (!p) return false;
  struct stat st;
  int rc = stat(p, &st);
  int e = errno;
  free(p);
  if (rc != 0) return fail_errno(err, e);
  fill_metadata(&st, ret);
  return true;
}

bool exports_wasmftpd_plugin_storage_list_dir(storage_plugin_string_t *path,
                                              exports_wasmftpd_plugin_storage_list_dir_entry_t *ret,
                                              plugin_error_t *err) {
  char *p = guest_path(path, err);
  storage_plugin_string_free(path);
  if (!p) return false;
  DIR *dir = opendir(p);
  int e = errno;
  free(p);
  if (!dir) return fail_errno(err, e);

  size_t len = 0, cap = 16;
  exports_wasmftpd_plugin_storage_dir_entry_t *entries = malloc(cap * sizeof *entries);
  if (!entries) {
    closedir(dir);
    return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, "out of memory");
  }
  struct dirent *d;
  errno = 0;
  while ((d = readdir(dir)) != NULL) {
    if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
    struct stat st;
    // Follow links, as `ls -l` users expect of a listing; skip what vanished.
    if (fstatat(dirfd(dir), d->d_name, &st, 0) != 0) {
      if (errno == ENOENT) { errno = 0; continue; }
      e = errno;
      goto failed;
    }
    if (len == cap) {
      cap *= 2;
      void *grown = realloc(entries, cap * sizeof *entries);
      if (!grown) { e = ENOMEM; goto failed; }
      entries = grown;
    }
    storage_plugin_string_dup(&entries[len].name, d->d_name);
    fill_metadata(&st, &entries[len].metadata);
    len++;
    errno = 0;
  }
  if (errno != 0) { e = errno; goto failed; }
  closedir(dir);
  ret->ptr = entries;
  ret->len = len;
  return true;

failed:
  for (size_t i = 0; i < len; i++) storage_plugin_string_free(&entries[i].name);
  free(entries);
  closedir(dir);
  return fail_errno(err, e);
}

/* Transfers are of regular files only: on anything else, close fd and fail.
   Fills *st for callers that need the size. */
static bool require_regular_file(int fd, struct stat *st, plugin_error_t *err) {
  if (fstat(fd, st) != 0) {
    int e = errno;
    close(fd);
    return fail_errno(err, e);
  }
  if (S_ISREG(st->st_mode)) return true;
  close(fd);
  if (S_ISDIR(st->st_mode)) return fail_errno(err, EISDIR);
  return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_PERMISSION_DENIED, "not a regular file");
}

bool exports_wasmftpd_plugin_storage_open_read(storage_plugin_string_t *path, uint64_t offset,
                                               exports_wasmftpd_plugin_storage_read_source_t *ret,
                                               plugin_error_t *err) {
  char *p = guest_path(path, err);
  storage_plugin_string_free(path);
  if (!p) return false;
  int fd = open(p, O_RDONLY);
  int e = errno;
  free(p);
  if (fd < 0) return fail_errno(err, e);
  struct stat st;
  if (!require_regular_file(fd, &st, err)) return false;
  exports_wasmftpd_plugin_storage_reader_t *reader = malloc(sizeof *reader);
  if (!reader) {
    close(fd);
    return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, "out of memory");
  }
  reader->fd = fd;
  reader->position = offset;
  ret->tag = EXPORTS_WASMFTPD_PLUGIN_STORAGE_READ_SOURCE_CHUNKS;
  ret->val.chunks = exports_wasmftpd_plugin_storage_reader_new(reader);
  return true;
}

bool exports_wasmftpd_plugin_storage_open_write(storage_plugin_string_t *path,
                                                exports_wasmftpd_plugin_storage_write_mode_t *mode,
                                                exports_wasmftpd_plugin_storage_write_sink_t *ret,
                                                plugin_error_t *err) {
  char *p = guest_path(path, err);
  storage_plugin_string_free(path);
  if (!p) return false;
  int flags = O_WRONLY | O_CREAT;
  if (mode->tag == EXPORTS_WASMFTPD_PLUGIN_STORAGE_WRITE_MODE_TRUNCATE) flags |= O_TRUNC;
  int fd = open(p, flags, 0644);
  int e = errno;
  free(p);
  if (fd < 0) return fail_errno(err, e);
  struct stat st;
  if (!require_regular_file(fd, &st, err)) return false;
  exports_wasmftpd_plugin_storage_writer_t *writer = malloc(sizeof *writer);
  if (!writer) {
    close(fd);
    return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, "out of memory");
  }
  writer->fd = fd;
  switch (mode->tag) {
    case EXPORTS_WASMFTPD_PLUGIN_STORAGE_WRITE_MODE_OFFSET: writer->position = mode->val.offset; break;
    // One writer per file is the FTP norm, so the size at open is the end.
    case EXPORTS_WASMFTPD_PLUGIN_STORAGE_WRITE_MODE_APPEND: writer->position = (uint64_t)st.st_size; break;
    default: writer->position = 0; break;
  }
  ret->tag = EXPORTS_WASMFTPD_PLUGIN_STORAGE_WRITE_SINK_CHUNKS;
  ret->val.chunks = exports_wasmftpd_plugin_storage_writer_new(writer);
  return true;
}

bool exports_wasmftpd_plugin_storage_make_dir(storage_plugin_string_t *path, plugin_error_t *err) {
  char *p = guest_path(path, err);
  storage_plugin_string_free(path);
  if (!p) return false;
  int rc = mkdir(p, 0755);
  int e = errno;
  free(p);
  return rc == 0 ? true : fail_errno(err, e);
}

bool exports_wasmftpd_plugin_storage_remove_dir(storage_plugin_string_t *path, plugin_error_t *err) {
  char *p = guest_path(path, err);
  storage_plugin_string_free(path);
  if (!p) return false;
  int rc = rmdir(p);
  int e = errno;
  free(p);
  // POSIX lets rmdir of a non-empty directory report EEXIST too.
  if (rc != 0 && e == EEXIST) e = ENOTEMPTY;
  return rc == 0 ? true : fail_errno(err, e);
}

bool exports_wasmftpd_plugin_storage_delete(storage_plugin_string_t *path, plugin_error_t *err) {
  char *p = guest_path(path, err);
  storage_plugin_string_free(path);
  if (!p) return false;
  struct stat st;
  int rc;
  // unlink of a directory fails with different errors on different systems.
  if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
    rc = -1;
    errno = EISDIR;
  } else {
    rc = unlink(p);
  }
  int e = errno;
  free(p);
  return rc == 0 ? true : fail_errno(err, e);
}

bool exports_wasmftpd_plugin_storage_rename(storage_plugin_string_t *source, storage_plugin_string_t *target,
                                            plugin_error_t *err) {
  char *from = guest_path(source, err);
  storage_plugin_string_free(source);
  if (!from) {
    storage_plugin_string_free(target);
    return false;
  }
  char *to = guest_path(target, err);
  storage_plugin_string_free(target);
  if (!to) {
    free(from);
    return false;
  }
  int rc = rename(from, to);
  int e = errno;
  free(from);
  free(to);
  if (rc == 0) return true;
  // Renaming onto a directory that exists is a name clash.
  if (e == EEXIST || e == ENOTEMPTY || e == EISDIR)
    return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_ALREADY_EXISTS, NULL);
  return fail_errno(err, e);
}

bool exports_wasmftpd_plugin_storage_set_modified(storage_plugin_string_t *path,
                                                  exports_wasmftpd_plugin_storage_timestamp_t *time,
                                                  plugin_error_t *err) {
  char *p = guest_path(path, err);
  storage_plugin_string_free(path);
  if (!p) return false;
  struct timespec times[2] = {
      {.tv_sec = 0, .tv_nsec = UTIME_OMIT},
      {.tv_sec = (time_t)time->seconds, .tv_nsec = (long)time->nanoseconds},
  };
  int rc = utimensat(AT_FDCWD, p, times, 0);
  int e = errno;
  free(p);
  return rc == 0 ? true : fail_errno(err, e);
}

// ---- the chunked data path -------------------------------------------------

bool exports_wasmftpd_plugin_storage_method_reader_read(exports_wasmftpd_plugin_storage_borrow_reader_t self,
                                                       uint32_t max, storage_plugin_list_u8_t *ret,
                                                       plugin_error_t *err) {
  size_t want = max < MAX_CHUNK ? max : MAX_CHUNK;
  uint8_t *buf = want ? malloc(want) : NULL;
  if (want && !buf) return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, "out of memory");
  ssize_t n = want ? pread(self->fd, buf, want, (off_t)self->position) : 0;
  if (n < 0) {
    int e = errno;
    free(buf);
    return fail_errno(err, e);
  }
  self->position += (uint64_t)n;
  // An empty list (end of file) needs no buffer.
  if (n == 0) {
    free(buf);
    buf = NULL;
  }
  ret->ptr = buf;
  ret->len = (size_t)n;
  return true;
}

bool exports_wasmftpd_plugin_storage_method_writer_write(exports_wasmftpd_plugin_storage_borrow_writer_t self,
                                                        storage_plugin_list_u8_t *data, plugin_error_t *err) {
  size_t done = 0;
  while (done < data->len) {
    ssize_t n = pwrite(self->fd, data->ptr + done, data->len - done, (off_t)self->position);
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      storage_plugin_list_u8_free(data);
      return fail_errno(err, e);
    }
    done += (size_t)n;
    self->position += (uint64_t)n;
  }
  storage_plugin_list_u8_free(data);
  return true;
}

bool exports_wasmftpd_plugin_storage_method_writer_finish(exports_wasmftpd_plugin_storage_borrow_writer_t self,
                                                         plugin_error_t *err) {
  // Every write has reached the file; durability is the filesystem's business.
  (void)self;
  (void)err;
  return true;
}

void exports_wasmftpd_plugin_storage_reader_destructor(exports_wasmftpd_plugin_storage_reader_t *rep) {
  close(rep->fd);
  free(rep);
}

void exports_wasmftpd_plugin_storage_writer_destructor(exports_wasmftpd_plugin_storage_writer_t *rep) {
  close(rep->fd);
  free(rep);
}
