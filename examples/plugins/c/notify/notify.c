// notify: an event plugin in C (contract 0.2). POSTs one line of plain text
// per event to a URL, the shape chat and log-collector webhooks take:
//
//   upload ok: alice from 192.0.2.7 on site main: /reports/q3.pdf (123456 bytes, 42 ms)
//
// through the generated wasi:http bindings (outgoing-handler). The host lets
// the request out only if the URL's origin is in the event table's
// `allowed_hosts`; a refused or failed request fails the event with a message
// naming the URL and the reason, which the server logs. There are no retries
// here: `builtin:events-webhook` retries (and sends JSON).
//
// Configuration (the event table's `config`, read through wasi:config/store):
//
//   url     where to POST: http://HOST[:PORT]/PATH or https://... (required)
//   kinds   optional comma list of the events to send (`upload,delete`); default all
//
// Bindings come from `wit-bindgen c` (event_plugin.h); see ../build.sh.

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_plugin.h"

typedef exports_wasmftpd_plugin_events_event_t event_t;

// wasi:io streams take at most 4096 bytes per blocking write.
#define WRITE_CHUNK 4096
// The answer's body is read and dropped; beyond this much, not even read.
#define MAX_ANSWER (64 * 1024)

static const char *const KIND_NAMES[] = {
    "login", "login-failed", "logout", "upload", "download", "delete", "rename", "mkdir", "rmdir",
};

// Fails the event with a formatted message (the host logs it).
static bool fail(event_plugin_string_t *err, const char *format, ...) {
  char text[512];
  va_list args;
  va_start(args, format);
  vsnprintf(text, sizeof text, format, args);
  va_end(args);
  event_plugin_string_dup(err, text);
  return false;
}

// A config value as a NUL-terminated string (caller frees), or NULL.
static char *config(const char *name) {
  event_plugin_string_t key;
  event_plugin_string_set(&key, name);
  event_plugin_option_string_t value;
  wasi_config_store_error_t config_err;
  if (!wasi_config_store_get(&key, &value, &config_err)) {
    wasi_config_store_error_free(&config_err);
    return NULL;
  }
  if (!value.is_some) return NULL;
  char *text = malloc(value.val.len + 1);
  if (text) {
    memcpy(text, value.val.ptr, value.val.len);
    text[value.val.len] = '\0';
  }
  event_plugin_option_string_free(&value);
  return text;
}

// Whether the comma list `kinds` names `kind` (spaces around names allowed).
static bool listed(const char *kinds, const char *kind) {
  size_t want = strlen(kind);
  for (const char *p = kinds; *p;) {
    while (*p == ' ' || *p == ',') p++;
    const char *end = p;
    while (*end && *end != ',') end++;
    const char *last = end;
    while (last > p && last[-1] == ' ') last--;
    if ((size_t)(last - p) == want && memcmp(p, kind, want) == 0) return true;
    p = end;
  }
  return false;
}

// Appends formatted text to a growing buffer.
struct text {
  char *ptr;
  size_t len, cap;
};

static bool append(struct text *t, const char *format, ...) {
  va_list args;
  va_start(args, format);
  int n = vsnprintf(NULL, 0, format, args);
  va_end(args);
  if (n < 0) return false;
  if (t->len + (size_t)n + 1 > t->cap) {
    size_t cap = (t->len + (size_t)n + 1) * 2;
    char *grown = realloc(t->ptr, cap);
    if (!grown) return false;
    t->ptr = grown;
    t->cap = cap;
  }
  va_start(args, format);
  vsnprintf(t->ptr + t->len, t->cap - t->len, format, args);
  va_end(args);
  t->len += (size_t)n;
  return true;
}

#define STR(s) (int)(s).len, (const char *)(s).ptr

// The line for one event.
static bool describe(const event_t *e, struct text *t) {
  bool ok = append(t, "%s %s: %.*s from %.*s on site %.*s", KIND_NAMES[e->kind], e->ok ? "ok" : "failed",
                   STR(e->user), STR(e->client_address), STR(e->site));
  if (ok && e->path.is_some) ok = append(t, ": %.*s", STR(e->path.val));
  if (ok && e->target.is_some) ok = append(t, " -> %.*s", STR(e->target.val));
  if (ok && e->size.is_some) {
    ok = append(t, " (%llu bytes", (unsigned long long)e->size.val);
    if (ok && e->duration_ms.is_some) ok = append(t, ", %llu ms", (unsigned long long)e->duration_ms.val);
    if (ok) ok = append(t, ")");
  }
  return ok && append(t, "\n");
}

// The parts of an http(s) URL; pointers into `url`.
struct url {
  bool https;
  const char *authority, *path;
  size_t authority_len;
};

static bool parse_url(const char *url, struct url *out) {
  const char *rest;
  if (strncmp(url, "http://", 7) == 0) {
    out->https = false;
    rest = url + 7;
  } else if (strncmp(url, "https://", 8) == 0) {
    out->https = true;
    rest = url + 8;
  } else {
    return false;
  }
  const char *slash = strchr(rest, '/');
  out->authority = rest;
  out->authority_len = slash ? (size_t)(slash - rest) : strlen(rest);
  out->path = slash ? slash : "/";
  return out->authority_len > 0;
}

// Why a request failed, from wasi:http's error code. The host names the
// origin it refused in `internal-error`'s text.
static void describe_error(const wasi_http_types_error_code_t *code, char *out, size_t size) {
  if (code->tag == WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR && code->val.internal_error.is_some) {
    snprintf(out, size, "%.*s", STR(code->val.internal_error.val));
  } else if (code->tag == WASI_HTTP_TYPES_ERROR_CODE_HTTP_REQUEST_DENIED) {
    snprintf(out, size, "request denied by the host");
  } else {
    snprintf(out, size, "wasi:http error code %d", code->tag);
  }
}

// Writes the body to the request's body stream.
static bool write_body(wasi_http_types_borrow_outgoing_body_t body, const struct text *t) {
  wasi_io_streams_own_output_stream_t stream;
  if (!wasi_http_types_method_outgoing_body_write(body, &stream)) return false;
  wasi_io_streams_borrow_output_stream_t out = wasi_io_streams_borrow_output_stream(stream);
  bool ok = true;
  for (size_t at = 0; ok && at < t->len; at += WRITE_CHUNK) {
    size_t n = t->len - at < WRITE_CHUNK ? t->len - at : WRITE_CHUNK;
    event_plugin_list_u8_t chunk = {(uint8_t *)t->ptr + at, n};
    wasi_io_streams_stream_error_t stream_err;
    if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(out, &chunk, &stream_err)) {
      wasi_io_streams_stream_error_free(&stream_err);
      ok = false;
    }
  }
  // The stream must go before the body can be finished.
  wasi_io_streams_output_stream_drop_own(stream);
  return ok;
}

// Reads (and drops) the answer's body, so the exchange ends cleanly.
static void drain(wasi_http_types_borrow_incoming_response_t response) {
  wasi_http_types_own_incoming_body_t body;
  if (!wasi_http_types_method_incoming_response_consume(response, &body)) return;
  wasi_io_streams_own_input_stream_t stream;
  if (wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body), &stream)) {
    wasi_io_streams_borrow_input_stream_t in = wasi_io_streams_borrow_input_stream(stream);
    for (size_t total = 0; total < MAX_ANSWER;) {
      event_plugin_list_u8_t data;
      wasi_io_streams_stream_error_t stream_err;
      if (!wasi_io_streams_method_input_stream_blocking_read(in, 16384, &data, &stream_err)) {
        wasi_io_streams_stream_error_free(&stream_err);
        break;
      }
      total += data.len;
      event_plugin_list_u8_free(&data);
    }
    wasi_io_streams_input_stream_drop_own(stream);
  }
  wasi_http_types_incoming_body_drop_own(body);
}

// POSTs `t` to `url`: true on a 2xx answer, else false with *err set.
static bool post(const char *url_text, const struct url *url, const struct text *t, event_plugin_string_t *err) {
  char length[24];
  snprintf(length, sizeof length, "%zu", t->len);
  wasi_http_types_tuple2_field_name_field_value_t entries[] = {
      {{(uint8_t *)"content-type", 12}, {(uint8_t *)"text/plain; charset=utf-8", 25}},
      // A Content-Length rather than a chunked body: simple services expect it.
      {{(uint8_t *)"content-length", 14}, {(uint8_t *)length, strlen(length)}},
  };
  wasi_http_types_list_tuple2_field_name_field_value_t list = {entries, 2};
  wasi_http_types_own_fields_t headers;
  wasi_http_types_header_error_t header_err;
  if (!wasi_http_types_static_fields_from_list(&list, &headers, &header_err)) {
    return fail(err, "POST %s: cannot build the request headers", url_text);
  }

  wasi_http_types_own_outgoing_request_t request = wasi_http_types_constructor_outgoing_request(headers);
  wasi_http_types_borrow_outgoing_request_t r = wasi_http_types_borrow_outgoing_request(request);
  wasi_http_types_method_t method = {.tag = WASI_HTTP_TYPES_METHOD_POST};
  wasi_http_types_scheme_t scheme = {.tag = url->https ? WASI_HTTP_TYPES_SCHEME_HTTPS : WASI_HTTP_TYPES_SCHEME_HTTP};
  event_plugin_string_t authority = {(uint8_t *)url->authority, url->authority_len};
  event_plugin_string_t path = {(uint8_t *)url->path, strlen(url->path)};
  wasi_http_types_own_outgoing_body_t body;
  if (!wasi_http_types_method_outgoing_request_set_method(r, &method) ||
      !wasi_http_types_method_outgoing_request_set_scheme(r, &scheme) ||
      !wasi_http_types_method_outgoing_request_set_authority(r, &authority) ||
      !wasi_http_types_method_outgoing_request_set_path_with_query(r, &path) ||
      !wasi_http_types_method_outgoing_request_body(r, &body)) {
    wasi_http_types_outgoing_request_drop_own(request);
    return fail(err, "POST %s: not a URL this plugin can request", url_text);
  }

  // Send the head first: the host reads the body while it is written.
  wasi_http_types_own_future_incoming_response_t future;
  wasi_http_types_error_code_t code;
  if (!wasi_http_outgoing_handler_handle(request, NULL, &future, &code)) {
    char why[400];
    describe_error(&code, why, sizeof why);
    wasi_http_types_error_code_free(&code);
    wasi_http_types_outgoing_body_drop_own(body);
    return fail(err, "POST %s: %s", url_text, why);
  }
  bool written = write_body(wasi_http_types_borrow_outgoing_body(body), t);
  wasi_http_types_error_code_t finish_err;
  if (!wasi_http_types_static_outgoing_body_finish(body, NULL, &finish_err)) {
    wasi_http_types_error_code_free(&finish_err);
    written = false;
  }

  wasi_http_types_borrow_future_incoming_response_t f = wasi_http_types_borrow_future_incoming_response(future);
  wasi_io_poll_own_pollable_t ready = wasi_http_types_method_future_incoming_response_subscribe(f);
  wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(ready));
  wasi_io_poll_pollable_drop_own(ready);
  wasi_http_types_result_result_own_incoming_response_error_code_void_t answer;
  bool have = wasi_http_types_method_future_incoming_response_get(f, &answer);
  wasi_http_types_future_incoming_response_drop_own(future);
  if (!have || answer.is_err) return fail(err, "POST %s: no answer", url_text);
  if (answer.val.ok.is_err) {
    char why[400];
    describe_error(&answer.val.ok.val.err, why, sizeof why);
    wasi_http_types_error_code_free(&answer.val.ok.val.err);
    return fail(err, "POST %s: %s", url_text, why);
  }
  wasi_http_types_own_incoming_response_t response = answer.val.ok.val.ok;
  wasi_http_types_borrow_incoming_response_t borrowed = wasi_http_types_borrow_incoming_response(response);
  unsigned status = wasi_http_types_method_incoming_response_status(borrowed);
  drain(borrowed);
  wasi_http_types_incoming_response_drop_own(response);
  if (!written) return fail(err, "POST %s: sending the body failed (answered %u)", url_text, status);
  if (status < 200 || status > 299) return fail(err, "POST %s answered %u", url_text, status);
  return true;
}

bool exports_wasmftpd_plugin_events_handle(event_t *event, event_plugin_string_t *err) {
  bool ok = true;
  char *url_text = config("url");
  char *kinds = config("kinds");
  struct url url;
  struct text line = {0};
  if (!url_text) {
    ok = fail(err, "config key `url` is missing");
  } else if (!parse_url(url_text, &url)) {
    ok = fail(err, "config key `url`: %s is not an http:// or https:// URL", url_text);
  } else if (event->kind >= sizeof KIND_NAMES / sizeof *KIND_NAMES) {
    ok = fail(err, "unknown event kind %d", event->kind);
  } else if (kinds && !listed(kinds, KIND_NAMES[event->kind])) {
    ok = true;  // not wanted here
  } else if (!describe(event, &line)) {
    ok = fail(err, "out of memory");
  } else {
    ok = post(url_text, &url, &line, err);
  }
  free(line.ptr);
  free(kinds);
  free(url_text);
  exports_wasmftpd_plugin_events_event_free(event);
  return ok;
}
