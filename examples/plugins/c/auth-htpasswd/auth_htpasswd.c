// auth-htpasswd: an auth plugin in C (contract 0.2). Checks users against a
// password file in a directory the site grants it (a WASI preopen): one
// `user:hash` line per account, the format of htpasswd files and of
// /etc/shadow. Fields after the hash are ignored, as are blank lines and
// lines starting with `#`; a hash starting with `!` or `*` is a locked
// account.
//
// The host checks the hash (wasmftpd:plugin/password), natively and in
// constant time, in any format it knows: bcrypt (`htpasswd -B` writes
// `$2y$`), SHA-crypt (`$6$`, `$5$`: `openssl passwd -6`, mkpasswd,
// /etc/shadow) and argon2 (`wasmftpd hash-password`). No crypto is compiled
// in here.
//
// Configuration (the site's `auth.config`, read through wasi:config/store):
//
//   file          guest path of the password file (default "/htpasswd")
//   home          every account's home; `{user}` is replaced by the user name
//                 (default "/")
//   permissions   `all` (default) or `read-only` (read and list)
//
// The file is read on every login and nothing is kept between logins, so an
// edit counts at the next login, whether instances are fresh or reused.
//
// Bindings come from `wit-bindgen c` (auth_plugin.h); see ../build.sh.

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "auth_plugin.h"

typedef exports_wasmftpd_plugin_auth_credentials_t credentials_t;
typedef exports_wasmftpd_plugin_auth_account_t account_t;
typedef exports_wasmftpd_plugin_auth_refusal_t refusal_t;
typedef auth_plugin_list_tuple2_string_string_t config_t;

#define BAD_CREDENTIALS EXPORTS_WASMFTPD_PLUGIN_AUTH_REFUSAL_REASON_BAD_CREDENTIALS
#define DISABLED EXPORTS_WASMFTPD_PLUGIN_AUTH_REFUSAL_REASON_DISABLED
#define UNAVAILABLE EXPORTS_WASMFTPD_PLUGIN_AUTH_REFUSAL_REASON_UNAVAILABLE

// Checked for unknown users, so they cost what a real check costs
// (SHA-512-crypt at its default 5,000 rounds, as `openssl passwd -6` makes).
static const char PAD_HASH[] =
    "$6$timingpad$qJia40F..8WRi05JE3ZLO7y58pj2WgXx1l7/T.4O3RhnuxPGQG07V7yF4d7U11RDAAEzaxn6Uv8FD0uLDwN190";

// Longer passwords are refused before hashing: SHA-crypt's work grows with
// the square of the password length.
#define MAX_PASSWORD 1024

#define STR(s) (int)(s).len, (const char *)(s).ptr

// ---- refusals -----------------------------------------------------------------

static bool refuse(refusal_t *err, exports_wasmftpd_plugin_auth_refusal_reason_t reason, const char *message) {
  err->reason = reason;
  err->message.is_some = message != NULL;
  if (message) {
    // The generated glue frees the message after the call returns.
    auth_plugin_string_dup(&err->message.val, message);
  }
  return false;
}

// The reason is on stderr (the server log); the client learns only this.
static bool unavailable(refusal_t *err) {
  return refuse(err, UNAVAILABLE, "user store unavailable; see the server log");
}

// ---- configuration ------------------------------------------------------------

// The value of `key`, or NULL when the config does not set it.
static const auth_plugin_string_t *lookup(const config_t *config, const char *key) {
  size_t n = strlen(key);
  for (size_t i = 0; i < config->len; i++) {
    const auth_plugin_string_t *k = &config->ptr[i].f0;
    if (k->len == n && memcmp(k->ptr, key, n) == 0) return &config->ptr[i].f1;
  }
  return NULL;
}

static bool equals(const auth_plugin_string_t *value, const char *text) {
  return value->len == strlen(text) && memcmp(value->ptr, text, value->len) == 0;
}

// The value of `key` as a NUL-terminated string (caller frees), `fallback`
// when the key is absent; NULL when out of memory.
static char *config_text(const config_t *config, const char *key, const char *fallback) {
  const auth_plugin_string_t *value = lookup(config, key);
  return value ? strndup((const char *)value->ptr, value->len) : strdup(fallback);
}

// What the `permissions` key grants; false (after logging why) for a value
// this plugin does not know.
static bool permissions(const config_t *config, wasmftpd_plugin_types_permissions_t *out) {
  const auth_plugin_string_t *value = lookup(config, "permissions");
  if (!value || equals(value, "all")) {
    *out = WASMFTPD_PLUGIN_TYPES_PERMISSIONS_READ | WASMFTPD_PLUGIN_TYPES_PERMISSIONS_WRITE |
           WASMFTPD_PLUGIN_TYPES_PERMISSIONS_APPEND | WASMFTPD_PLUGIN_TYPES_PERMISSIONS_DELETE |
           WASMFTPD_PLUGIN_TYPES_PERMISSIONS_RENAME | WASMFTPD_PLUGIN_TYPES_PERMISSIONS_MAKE_DIR |
           WASMFTPD_PLUGIN_TYPES_PERMISSIONS_REMOVE_DIR | WASMFTPD_PLUGIN_TYPES_PERMISSIONS_LIST_DIR |
           WASMFTPD_PLUGIN_TYPES_PERMISSIONS_SET_TIME;
    return true;
  }
  if (equals(value, "read-only")) {
    *out = WASMFTPD_PLUGIN_TYPES_PERMISSIONS_READ | WASMFTPD_PLUGIN_TYPES_PERMISSIONS_LIST_DIR;
    return true;
  }
  fprintf(stderr, "auth-htpasswd: config key permissions: \"%.*s\" is neither all nor read-only\n", STR(*value));
  return false;
}

// `template` with each `{user}` replaced by `user`, written to `out` unless
// it is NULL; returns the length.
static size_t expand(const uint8_t *template, size_t n, const auth_plugin_string_t *user, uint8_t *out) {
  static const char MARK[] = "{user}";
  const size_t mark = sizeof MARK - 1;
  size_t len = 0;
  for (size_t i = 0; i < n;) {
    if (i + mark <= n && memcmp(template + i, MARK, mark) == 0) {
      if (out) memcpy(out + len, user->ptr, user->len);
      len += user->len;
      i += mark;
    } else {
      if (out) out[len] = template[i];
      len++;
      i++;
    }
  }
  return len;
}

// The account's home, from the `home` key. Fails (after logging why) when
// it is not absolute or memory runs out.
static bool home(const config_t *config, const auth_plugin_string_t *user, auth_plugin_string_t *out) {
  const auth_plugin_string_t *value = lookup(config, "home");
  const uint8_t *template = value ? value->ptr : (const uint8_t *)"/";
  size_t n = value ? value->len : 1;
  if (n == 0 || template[0] != '/') {
    fprintf(stderr, "auth-htpasswd: config key home: \"%.*s\" is not an absolute path\n", (int)n,
            (const char *)template);
    return false;
  }
  // Owned by the account, which the generated glue frees after the call.
  out->len = expand(template, n, user, NULL);
  if (!(out->ptr = malloc(out->len))) {
    fprintf(stderr, "auth-htpasswd: out of memory\n");
    return false;
  }
  expand(template, n, user, out->ptr);
  return true;
}

// ---- the password file --------------------------------------------------------

// Looks `user` up in the password file at `path`: *hash is its stored hash
// (caller frees), or NULL when the file does not list it; the first line for
// a name counts. The whole file is read whatever the answer, so the time a
// login takes does not tell where, or whether, a name is listed. Fails (after
// logging why) when the file cannot be read.
static bool find(const char *path, const auth_plugin_string_t *user, char **hash) {
  *hash = NULL;
  FILE *f = fopen(path, "r");
  struct stat st;
  // A directory opens, then fails to read with a puzzling EBADF: say why.
  int e = !f ? errno : fstat(fileno(f), &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
  if (e) {
    fprintf(stderr, "auth-htpasswd: cannot read the password file %s: %s\n", path, strerror(e));
    if (f) fclose(f);
    return false;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t got;
  bool ok = true;
  while (ok && (got = getline(&line, &cap, f)) >= 0) {
    size_t n = (size_t)got;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
    if (*hash || n == 0 || line[0] == '#') continue;
    const char *colon = memchr(line, ':', n);
    if (!colon || (size_t)(colon - line) != user->len || memcmp(line, user->ptr, user->len) != 0) continue;
    const char *start = colon + 1, *end = memchr(start, ':', line + n - start);
    if (!(*hash = strndup(start, (size_t)((end ? end : line + n) - start)))) {
      fprintf(stderr, "auth-htpasswd: out of memory\n");
      ok = false;
    }
  }
  if (ok && ferror(f)) {
    fprintf(stderr, "auth-htpasswd: cannot read the password file %s: %s\n", path, strerror(errno));
    ok = false;
  }
  free(line);
  fclose(f);
  if (!ok) {
    free(*hash);
    *hash = NULL;
  }
  return ok;
}

// ---- checking a password ------------------------------------------------------

// Asks the host whether `password` matches `hash`: 1 yes, 0 no, -1 when the
// host cannot check this hash (logged: the login is then unavailable).
// `whose` names the hash in the log; the hash itself never goes there.
static int verify(const char *hash, auth_plugin_string_t *password, const char *whose) {
  // Every known format is printable ASCII; anything else is not even sent
  // (a component-model string must be valid UTF-8).
  for (const unsigned char *c = (const unsigned char *)hash; *c; c++) {
    if (*c < 0x20 || *c > 0x7e) {
      fprintf(stderr, "auth-htpasswd: the hash of %s is not a format the host knows\n", whose);
      return -1;
    }
  }
  auth_plugin_string_t stored;
  auth_plugin_string_set(&stored, hash);
  bool match;
  wasmftpd_plugin_password_hash_error_t error;
  // The import borrows both strings; only an error's text becomes ours.
  if (wasmftpd_plugin_password_verify(&stored, password, &match, &error)) return match;
  switch (error.tag) {
    case WASMFTPD_PLUGIN_PASSWORD_HASH_ERROR_MALFORMED:
      fprintf(stderr, "auth-htpasswd: the hash of %s is malformed: %.*s\n", whose, STR(error.val.malformed));
      break;
    case WASMFTPD_PLUGIN_PASSWORD_HASH_ERROR_TOO_COSTLY:
      fprintf(stderr, "auth-htpasswd: the hash of %s is too costly: %.*s\n", whose, STR(error.val.too_costly));
      break;
    default:
      fprintf(stderr, "auth-htpasswd: the hash of %s is not a format the host knows\n", whose);
  }
  wasmftpd_plugin_password_hash_error_free(&error);
  return -1;
}

// ---- login --------------------------------------------------------------------

static bool login(const config_t *config, credentials_t *c, account_t *ret, refusal_t *err) {
  wasmftpd_plugin_types_permissions_t granted;
  if (!permissions(config, &granted)) return unavailable(err);
  char *path = config_text(config, "file", "/htpasswd"), *hash = NULL;
  if (!path) {
    fprintf(stderr, "auth-htpasswd: out of memory\n");
    return unavailable(err);
  }
  bool read = find(path, &c->user, &hash);
  free(path);
  if (!read) return unavailable(err);

  if (!hash) {
    // Spend the time a real check takes, so a wrong user name is not faster
    // to detect than a wrong password.
    if (verify(PAD_HASH, &c->password, "the timing pad") < 0) return unavailable(err);
    return refuse(err, BAD_CREDENTIALS, NULL);
  }
  if (hash[0] == '!' || hash[0] == '*') {
    free(hash);
    return refuse(err, DISABLED, "account locked");
  }
  // The user name is in the file, so it is the administrator's text: safe to log.
  char *whose = strndup((const char *)c->user.ptr, c->user.len);
  int match = whose ? verify(hash, &c->password, whose) : -1;
  free(whose);
  free(hash);
  if (match < 0) return unavailable(err);
  if (!match) return refuse(err, BAD_CREDENTIALS, NULL);

  memset(ret, 0, sizeof *ret);  // no limits, no attributes
  if (!home(config, &c->user, &ret->home)) return unavailable(err);
  // The account outlives the credentials, freed when this call ends.
  auth_plugin_string_dup_n(&ret->user, (const char *)c->user.ptr, c->user.len);
  ret->permissions = granted;
  return true;
}

bool exports_wasmftpd_plugin_auth_login(credentials_t *credentials, account_t *ret, refusal_t *err) {
  const auth_plugin_string_t *user = &credentials->user;
  bool ok;
  // A name that could not appear in the file (or would confuse it) is simply
  // unknown; an overlong password is refused before any hashing.
  if (user->len == 0 || memchr(user->ptr, ':', user->len) || memchr(user->ptr, '\n', user->len) ||
      credentials->password.len > MAX_PASSWORD) {
    ok = refuse(err, BAD_CREDENTIALS, NULL);
  } else {
    // The config is read on every login too: a reused instance then needs
    // nothing from an earlier one.
    config_t config;
    wasi_config_store_error_t config_err;
    if (wasi_config_store_get_all(&config, &config_err)) {
      ok = login(&config, credentials, ret, err);
      auth_plugin_list_tuple2_string_string_free(&config);
    } else {
      const auth_plugin_string_t *why =
          config_err.tag == WASI_CONFIG_STORE_ERROR_UPSTREAM ? &config_err.val.upstream : &config_err.val.io;
      fprintf(stderr, "auth-htpasswd: cannot read the config: %.*s\n", STR(*why));
      wasi_config_store_error_free(&config_err);
      ok = unavailable(err);
    }
  }
  // The arguments are ours to free.
  exports_wasmftpd_plugin_auth_credentials_free(credentials);
  return ok;
}
