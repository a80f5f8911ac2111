// storage-dir: a storage plugin in C (contract 0.2). Serves a directory the
// site grants it (a WASI preopen) as `/`, through plain POSIX calls that
// wasi-libc turns into WASI filesystem calls, moves file data through the
// portable chunked path (the `reader` and `writer` resources) and lists
// directories a page at a time (the `dir-lister` resource).
//
// Configuration (the site's `storage.config`, read through wasi:config/store):
//
//   root             guest path of the granted directory to serve (default "/")
//   root_attribute   optional: the name of an account attribute (from the auth
//                    plugin) holding a directory, relative to `root`, that
//                    becomes the session's `/`; created on first login; a
//                    session whose account lacks it is refused
//
// Each login opens its own session (`open-session`) with the account's facts;
// the session remembers its root.
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

struct exports_wasmftpd_plugin_storage_session_t {
  // The served directory's guest path without a trailing slash ("" for "/").
  char *root;
};

struct exports_wasmftpd_plugin_storage_dir_lister_t {
  DIR *dir;
};

typedef exports_wasmftpd_plugin_storage_session_t session_t;

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

static bool misconfigured(plugin_error_t *err) {
  return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_UNAVAILABLE, "storage misconfigured; see the server log");
}

// A config value as a NUL-terminated string (caller frees), NULL when the key
// is absent. Fails (and returns false) when the config cannot be read.
static bool config_get(const char *name, char **out, plugin_error_t *err) {
  storage_plugin_string_t key;
  storage_plugin_string_set(&key, name);
  storage_plugin_option_string_t value;
  wasi_config_store_error_t config_err;
  *out = NULL;
  if (!wasi_config_store_get(&key, &value, &config_err)) {
    wasi_config_store_error_free(&config_err);
    fprintf(stderr, "storage-dir: cannot read config key %s\n", name);
    return misconfigured(err);
  }
  if (!value.is_some) return true;
  char *text = malloc(value.val.len + 1);
  if (!text) {
    storage_plugin_option_string_free(&value);
    return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, "out of memory");
  }
  memcpy(text, value.val.ptr, value.val.len);
  text[value.val.len] = '\0';
  storage_plugin_option_string_free(&value);
  *out = text;
  return true;
}

static bool is_directory(const char *path) {
  struct stat st;
  return stat(*path ? path : "/", &st) == 0 && S_ISDIR(st.st_mode);
}

// Whether `sub` is a relative directory path of plain segments ("a/b", not
// "", "/", "..", "a//b" or one with a NUL).
static bool plain_relative(const storage_plugin_string_t *sub) {
  size_t n = sub->len, seg = 0;
  if (n == 0) return false;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || sub->ptr[i] == '/') {
      const uint8_t *s = sub->ptr + i - seg;
      if (seg == 0 || (seg == 1 && s[0] == '.') || (seg == 2 && s[0] == '.' && s[1] == '.')) return false;
      seg = 0;
    } else if (sub->ptr[i] == '\0') {
      return false;
    } else {
      seg++;
    }
  }
  return true;
}

// The account's directory under `base`: base + "/" + sub, each level created
// when missing. Caller frees.
static char *user_root(const char *base, const storage_plugin_string_t *sub, plugin_error_t *err) {
  size_t base_len = strlen(base);
  char *root = malloc(base_len + 1 + sub->len + 1);
  if (!root) {
    fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, "out of memory");
    return NULL;
  }
  memcpy(root, base, base_len);
  root[base_len] = '/';
  memcpy(root + base_len + 1, sub->ptr, sub->len);
  root[base_len + 1 + sub->len] = '\0';
  // mkdir each level: a new user's root may be several levels deep.
  for (char *slash = root + base_len + 1;; slash++) {
    if (*slash != '/' && *slash != '\0') continue;
    char saved = *slash;
    *slash = '\0';
    if (mkdir(root, 0755) != 0 && errno != EEXIST) {
      int e = errno;
      fprintf(stderr, "storage-dir: cannot create the account's root %s: %s\n", root, strerror(e));
      free(root);
      fail_errno(err, e);
      return NULL;
    }
    *slash = saved;
    if (saved == '\0') break;
  }
  return root;
}

// The root of a new session: `root`, then the account's `root_attribute`.
static char *session_root(const exports_wasmftpd_plugin_storage_session_facts_t *facts, plugin_error_t *err) {
  char *base, *attribute;
  if (!config_get("root", &base, err)) return NULL;
  if (!base && !(base = strdup(""))) {
    fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, "out of memory");
    return NULL;
  }
  size_t len = strlen(base);
  while (len > 0 && base[len - 1] == '/') base[--len] = '\0';
  if (!is_directory(base)) {
    fprintf(stderr, "storage-dir: no granted directory is named \"%s\" (config key root)\n", len ? base : "/");
    free(base);
    misconfigured(err);
    return NULL;
  }
  if (!config_get("root_attribute", &attribute, err)) {
    free(base);
    return NULL;
  }
  if (!attribute) return base;

  const storage_plugin_string_t *sub = NULL;
  for (size_t i = 0; i < facts->attributes.len; i++) {
    const storage_plugin_string_t *k = &facts->attributes.ptr[i].f0;
    if (k->len == strlen(attribute) && memcmp(k->ptr, attribute, k->len) == 0) {
      sub = &facts->attributes.ptr[i].f1;
      break;
    }
  }
  char *root = NULL;
  if (!sub || !plain_relative(sub)) {
    fprintf(stderr, "storage-dir: account %.*s has no usable `%s` attribute (config key root_attribute)\n",
            (int)facts->user.len, (const char *)facts->user.ptr, attribute);
    fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_PERMISSION_DENIED, "this account has no storage root");
  } else {
    root = user_root(base, sub, err);
  }
  free(base);
  free(attribute);
  return root;
}

// Turns a virtual path into a NUL-terminated guest path under the session's
// root (caller frees), or fails. The host has normalized the path already;
// anything odd is refused, not repaired.
static char *guest_path(const session_t *session, const storage_plugin_string_t *path, plugin_error_t *err) {
  const uint8_t *p = path->ptr;
  size_t n = path->len;
  if (n == 0 || p[0] != '/') {
    fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_INVALID_NAME, "path must be absolute");
    return NULL;
  }
  if (n > 1) {
    storage_plugin_string_t rest = {(uint8_t *)p + 1, n - 1};
    if (!plain_relative(&rest)) {
      fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_INVALID_NAME, "path is not normalized");
      return NULL;
    }
  }
  size_t root_len = strlen(session->root);
  char *out = malloc(root_len + n + 1);
  if (!out) {
    fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, "out of memory");
    return NULL;
  }
  memcpy(out, session->root, root_len);
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

bool exports_wasmftpd_plugin_storage_open_session(exports_wasmftpd_plugin_storage_session_facts_t *facts,
                                                  exports_wasmftpd_plugin_storage_own_session_t *ret,
                                                  plugin_error_t *err) {
  char *root = session_root(facts, err);
  exports_wasmftpd_plugin_storage_session_facts_free(facts);
  if (!root) return false;
  session_t *session = malloc(sizeof *session);
  if (!session) {
    free(root);
    return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, "out of memory");
  }
  session->root = root;
  *ret = exports_wasmftpd_plugin_storage_session_new(session);
  return true;
}

bool exports_wasmftpd_plugin_storage_method_session_stat(exports_wasmftpd_plugin_storage_borrow_session_t self,
    storage_plugin_string_t *path, plugin_metadata_t *ret, plugin_error_t *err) {
  char *p = guest_path(self, path, err);
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

bool exports_wasmftpd_plugin_storage_method_session_list_dir(exports_wasmftpd_plugin_storage_borrow_session_t self,
                                                             storage_plugin_string_t *path,
                                                             exports_wasmftpd_plugin_storage_own_dir_lister_t *ret,
                                                             plugin_error_t *err) {
  char *p = guest_path(self, path, err);
  storage_plugin_string_free(path);
  if (!p) return false;
  DIR *dir = opendir(p);
  int e = errno;
  free(p);
  if (!dir) return fail_errno(err, e);
  exports_wasmftpd_plugin_storage_dir_lister_t *lister = malloc(sizeof *lister);
  if (!lister) {
    closedir(dir);
    return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, "out of memory");
  }
  lister->dir = dir;
  *ret = exports_wasmftpd_plugin_storage_dir_lister_new(lister);
  return true;
}

// Up to `max` entries from where the last page ended: one readdir stream per
// listing, so memory stays bounded by the page, whatever the directory holds.
bool exports_wasmftpd_plugin_storage_method_dir_lister_next_page(exports_wasmftpd_plugin_storage_borrow_dir_lister_t self,
                                                                uint32_t max,
                                                                exports_wasmftpd_plugin_storage_list_dir_entry_t *ret,
                                                                plugin_error_t *err) {
  size_t len = 0, cap = max < 64 ? max : 64;
  exports_wasmftpd_plugin_storage_dir_entry_t *entries = cap ? malloc(cap * sizeof *entries) : NULL;
  if (cap && !entries) return fail(err, WASMFTPD_PLUGIN_TYPES_ERROR_CODE_IO, "out of memory");
  int e = 0;
  struct dirent *d;
  while (len < max) {
    errno = 0;
    if ((d = readdir(self->dir)) == NULL) {
      e = errno;
      break;
    }
    if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
    struct stat st;
    // Follow links, as `ls -l` users expect of a listing; skip what vanished.
    if (fstatat(dirfd(self->dir), d->d_name, &st, 0) != 0) {
      if (errno == ENOENT) continue;
      e = errno;
      break;
    }
    if (len == cap) {
      cap = cap * 2 < max ? cap * 2 : max;
      void *grown = realloc(entries, cap * sizeof *entries);
      if (!grown) { e = ENOMEM; break; }
      entries = grown;
    }
    storage_plugin_string_dup(&entries[len].name, d->d_name);
    fill_metadata(&st, &entries[len].metadata);
    len++;
  }
  if (e != 0) {
    for (size_t i = 0; i < len; i++) storage_plugin_string_free(&entries[i].name);
    free(entries);
    return fail_errno(err, e);
  }
  // An empty page (the end) needs no buffer.
  if (len == 0) {
    free(entries);
    entries = NULL;
  }
  ret->ptr = entries;
  ret->len = len;
  return true;
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

bool exports_wasmftpd_plugin_storage_method_session_open_read(exports_wasmftpd_plugin_storage_borrow_session_t self,
    storage_plugin_string_t *path, uint64_t offset,
                                               exports_wasmftpd_plugin_storage_read_source_t *ret,
                                               plugin_error_t *err) {
  char *p = guest_path(self, path, err);
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

bool exports_wasmftpd_plugin_storage_method_session_open_write(exports_wasmftpd_plugin_storage_borrow_session_t self,
    storage_plugin_string_t *path,
                                                exports_wasmftpd_plugin_storage_write_mode_t *mode,
                                                exports_wasmftpd_plugin_storage_write_sink_t *ret,
                                                plugin_error_t *err) {
  char *p = guest_path(self, path, err);
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

bool exports_wasmftpd_plugin_storage_method_session_make_dir(exports_wasmftpd_plugin_storage_borrow_session_t self,
    storage_plugin_string_t *path, plugin_error_t *err) {
  char *p = guest_path(self, path, err);
  storage_plugin_string_free(path);
  if (!p) return false;
  int rc = mkdir(p, 0755);
  int e = errno;
  free(p);
  return rc == 0 ? true : fail_errno(err, e);
}

bool exports_wasmftpd_plugin_storage_method_session_remove_dir(exports_wasmftpd_plugin_storage_borrow_session_t self,
    storage_plugin_string_t *path, plugin_error_t *err) {
  char *p = guest_path(self, path, err);
  storage_plugin_string_free(path);
  if (!p) return false;
  int rc = rmdir(p);
  int e = errno;
  free(p);
  // POSIX lets rmdir of a non-empty directory report EEXIST too.
  if (rc != 0 && e == EEXIST) e = ENOTEMPTY;
  return rc == 0 ? true : fail_errno(err, e);
}

bool exports_wasmftpd_plugin_storage_method_session_delete(exports_wasmftpd_plugin_storage_borrow_session_t self,
    storage_plugin_string_t *path, plugin_error_t *err) {
  char *p = guest_path(self, path, err);
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

bool exports_wasmftpd_plugin_storage_method_session_rename(exports_wasmftpd_plugin_storage_borrow_session_t self,
    storage_plugin_string_t *source, storage_plugin_string_t *target,
                                            plugin_error_t *err) {
  char *from = guest_path(self, source, err);
  storage_plugin_string_free(source);
  if (!from) {
    storage_plugin_string_free(target);
    return false;
  }
  char *to = guest_path(self, target, err);
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

bool exports_wasmftpd_plugin_storage_method_session_set_modified(exports_wasmftpd_plugin_storage_borrow_session_t self,
    storage_plugin_string_t *path,
                                                  exports_wasmftpd_plugin_storage_timestamp_t *time,
                                                  plugin_error_t *err) {
  char *p = guest_path(self, path, err);
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

void exports_wasmftpd_plugin_storage_dir_lister_destructor(exports_wasmftpd_plugin_storage_dir_lister_t *rep) {
  closedir(rep->dir);
  free(rep);
}

void exports_wasmftpd_plugin_storage_session_destructor(exports_wasmftpd_plugin_storage_session_t *rep) {
  free(rep->root);
  free(rep);
}
