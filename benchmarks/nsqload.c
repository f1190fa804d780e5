/* nsqload: a neutral NSQ V2 load generator, the same client for any nsqd. The workplace's
 * ../shared/bench/nsqload.c with the transports added; plain puts the same bytes on the wire as it.
 *   nsqload pub PORT TOPIC SIZE BATCH SECONDS CONNS [TRANSPORT]   -> MPUB batches, waits for each OK
 *   nsqload sub PORT TOPIC CHANNEL SECONDS CONNS RDY [TRANSPORT]  -> SUB, RDY, FIN every message
 * TRANSPORT is plain (the default: "  V2" and straight to work, no IDENTIFY), tls, snappy, deflate,
 * tls+snappy or tls+deflate: IDENTIFY with feature_negotiation asks for it, its answer must grant it, and
 * then as in nsqd 1.3: the TLS handshake and an OK through TLS, then both ways the snappy stream (framed,
 * CRC-32C) or deflate (raw, level 6, a sync flush after each write) and an OK through that. TLS offers
 * only AES-128-GCM (TLS 1.3's TLS_AES_128_GCM_SHA256; in TLS 1.2 with ECDHE), so that every server runs
 * the same cipher; the server's certificate is verified (for 127.0.0.1) only if NSQLOAD_TLS_CA names a
 * CA file. Prints one line: "<mode> msgs=<n> secs=<s> rate=<msgs/s>". Build: gcc -O2 -pthread (plain
 * only), or with the transports: gcc -O2 -pthread -DNSQLOAD_TRANSPORTS ... -lssl -lcrypto -lz -lsnappy. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef NSQLOAD_TRANSPORTS
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <snappy-c.h>
#include <zlib.h>
#if defined(__x86_64__)
#include <nmmintrin.h>
#endif
#endif

static int port, size, batch, conns, rdy;
static double seconds;
static const char *topic, *channel, *transport = "plain";
static volatile long total;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

/* a connection: its socket and, with a transport, TLS on it and a compressed stream on top */
typedef struct {
  int fd;
#ifdef NSQLOAD_TRANSPORTS
  SSL *ssl;
  int zip;                       /* 's'nappy, 'd'eflate or 0 */
  char *raw, *out, *w;           /* compressed bytes read and not yet decoded; a snappy chunk decoded and
                                    not yet taken; compressed bytes to write */
  size_t rcap, rlo, rhi, olo, ohi, wcap;
  int sent_id, got_id;           /* snappy's stream identifier */
  z_stream in, on;
#endif
} conn_t;

static conn_t *dial(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); exit(2); }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (write(fd, "  V2", 4) != 4) exit(2);
  conn_t *c = calloc(1, sizeof *c);
  c->fd = fd;
  return c;
}

static void put32(char *p, uint32_t v) { v = htonl(v); memcpy(p, &v, 4); }
static uint32_t get32(const char *p) { uint32_t v; memcpy(&v, p, 4); return ntohl(v); }

static void writeall(int fd, const char *p, size_t n) {
  while (n) { ssize_t w = write(fd, p, n); if (w <= 0) { perror("write"); exit(2); } p += w; n -= w; }
}

#ifdef NSQLOAD_TRANSPORTS
static SSL_CTX *tls;
static uint32_t crc_table[256];
static int crc_sse42;

static void fail(const char *what) { fprintf(stderr, "%s\n", what); exit(2); }

static void setup(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78 : c >> 1;
    crc_table[i] = c;
  }
#if defined(__x86_64__)
  crc_sse42 = __builtin_cpu_supports("sse4.2");
#endif
  if (!strncmp(transport, "tls", 3)) {
    tls = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_ciphersuites(tls, "TLS_AES_128_GCM_SHA256");
    SSL_CTX_set_cipher_list(tls, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256");
    const char *ca = getenv("NSQLOAD_TLS_CA");
    if (ca && *ca) {
      if (SSL_CTX_load_verify_locations(tls, ca, NULL) != 1) { fprintf(stderr, "cannot load CA file %s\n", ca); exit(2); }
      SSL_CTX_set_verify(tls, SSL_VERIFY_PEER, NULL);
      X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(tls), "127.0.0.1");
    }
  }
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const unsigned char *p, size_t n) {
  uint64_t c64 = c, v;
  for (; n >= 8; p += 8, n -= 8) { memcpy(&v, p, 8); c64 = _mm_crc32_u64(c64, v); }
  for (c = (uint32_t)c64; n; n--) c = _mm_crc32_u8(c, *p++);
  return c;
}
#endif
/* snappy's checksum: the CRC-32C of the uncompressed data, masked */
static uint32_t crc_masked(const char *data, size_t n) {
  const unsigned char *p = (const unsigned char *)data;
  uint32_t c = ~0u;
#if defined(__x86_64__)
  if (crc_sse42) c = crc_hw(c, p, n); else
#endif
  while (n--) c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
  c = ~c;
  return ((c >> 15) | (c << 17)) + 0xa282ead8;
}
static uint32_t le32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return u[0] | u[1] << 8 | u[2] << 16 | (uint32_t)u[3] << 24;
}
static void putle(char *p, uint32_t v, int n) { for (int i = 0; i < n; i++) p[i] = (char)(v >> 8 * i); }

/* below the compression: TLS or the socket; -1 for a timeout or the end */
static ssize_t lower_read(conn_t *c, char *p, size_t n) {
  if (!c->ssl) return read(c->fd, p, n);
  int k = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
  return k > 0 ? k : -1;
}
static void lower_write(conn_t *c, const char *p, size_t n) {
  if (!c->ssl) { writeall(c->fd, p, n); return; }
  while (n) {
    int k = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    if (k <= 0) fail("write: TLS failed");
    p += k; n -= k;
  }
}
/* more compressed bytes from below, with room for `want` in all */
static ssize_t more_raw(conn_t *c, size_t want) {
  if (c->rlo) { memmove(c->raw, c->raw + c->rlo, c->rhi - c->rlo); c->rhi -= c->rlo; c->rlo = 0; }
  if (want > c->rcap) { c->rcap = want; c->raw = realloc(c->raw, c->rcap); }
  ssize_t k = lower_read(c, c->raw + c->rhi, c->rcap - c->rhi);
  if (k > 0) c->rhi += k;
  return k;
}

/* snappy's framing format: [type][3-byte LE length][masked CRC-32C, LE][data], up to 64 KiB a chunk */
static ssize_t unsnappy(conn_t *c, char *p, size_t n) {
  for (;;) {
    if (c->olo < c->ohi) {
      size_t k = c->ohi - c->olo < n ? c->ohi - c->olo : n;
      memcpy(p, c->out + c->olo, k); c->olo += k;
      return k;
    }
    unsigned char *h = (unsigned char *)c->raw + c->rlo;
    size_t have = c->rhi - c->rlo, len = have >= 4 ? h[1] | h[2] << 8 | (size_t)h[3] << 16 : 0, ulen;
    if (have < 4 || have < 4 + len) { ssize_t k = more_raw(c, 4 + len); if (k <= 0) return k; continue; }
    char *d = (char *)h + 4;
    c->rlo += 4 + len;
    if (h[0] == 0xff) {
      if (len != 6 || memcmp(d, "sNaPpY", 6)) fail("snappy: bad stream identifier");
      c->got_id = 1; continue;
    }
    if (!c->got_id) fail("snappy: no stream identifier");
    if (h[0] >= 0x80) continue; /* padding, skippable */
    if (h[0] > 1 || len < 4) fail("snappy: bad chunk");
    ulen = len - 4;
    if (h[0] == 0 && snappy_uncompressed_length(d + 4, len - 4, &ulen) != SNAPPY_OK) fail("snappy: bad chunk");
    if (ulen > 65536) fail("snappy: chunk over 64 KiB");
    char *to = ulen <= n ? p : c->out;
    if (h[0] == 0) { size_t m = ulen; if (snappy_uncompress(d + 4, len - 4, to, &m) != SNAPPY_OK || m != ulen) fail("snappy: bad chunk"); }
    else memcpy(to, d + 4, ulen);
    if (crc_masked(to, ulen) != le32(d)) fail("snappy: checksum mismatch");
    if (to != p) { c->olo = 0; c->ohi = ulen; }
    else if (ulen) return ulen;
  }
}
static void snappy_write(conn_t *c, const char *p, size_t n) {
  size_t need = 10 + (n / 65536 + 1) * (8 + snappy_max_compressed_length(65536));
  if (need > c->wcap) { c->wcap = need; c->w = realloc(c->w, need); }
  char *w = c->w;
  if (!c->sent_id) { memcpy(w, "\xff\x06\x00\x00" "sNaPpY", 10); w += 10; c->sent_id = 1; }
  while (n) {
    size_t k = n < 65536 ? n : 65536, m = snappy_max_compressed_length(k);
    if (snappy_compress(p, k, w + 8, &m) != SNAPPY_OK) fail("snappy: compress failed");
    w[0] = 0;
    if (m >= k - k / 8) { w[0] = 1; memcpy(w + 8, p, k); m = k; } /* as Go's snappy: not worth it */
    putle(w + 1, m + 4, 3); putle(w + 4, crc_masked(p, k), 4);
    w += 8 + m; p += k; n -= k;
  }
  lower_write(c, c->w, w - c->w);
}

static ssize_t undeflate(conn_t *c, char *p, size_t n) {
  for (;;) {
    if (c->rlo < c->rhi) {
      c->in.next_in = (Bytef *)c->raw + c->rlo; c->in.avail_in = c->rhi - c->rlo;
      c->in.next_out = (Bytef *)p; c->in.avail_out = n;
      int z = inflate(&c->in, Z_SYNC_FLUSH);
      if (z != Z_OK && z != Z_BUF_ERROR) fail(z == Z_STREAM_END ? "deflate: stream ended" : "deflate: bad stream");
      c->rlo = c->rhi - c->in.avail_in;
      if (c->in.avail_out < n) return n - c->in.avail_out;
    }
    ssize_t k = more_raw(c, 0);
    if (k <= 0) return k;
  }
}
/* Z_SYNC_FLUSH after each write; Z_FINISH ends the stream before hanging up (else Go's reader says
 * "unexpected EOF") */
static void deflate_write(conn_t *c, const char *p, size_t n, int flush) {
  c->on.next_in = (Bytef *)p; c->on.avail_in = n;
  do {
    c->on.next_out = (Bytef *)c->w; c->on.avail_out = c->wcap;
    if (deflate(&c->on, flush) == Z_STREAM_ERROR) fail("deflate: compress failed");
    lower_write(c, c->w, c->wcap - c->on.avail_out);
  } while (c->on.avail_out == 0);
}

static ssize_t conn_read(conn_t *c, char *p, size_t n) {
  return c->zip == 's' ? unsnappy(c, p, n) : c->zip == 'd' ? undeflate(c, p, n) : lower_read(c, p, n);
}
static void conn_write(conn_t *c, const char *p, size_t n) {
  if (c->zip == 's') snappy_write(c, p, n); else if (c->zip == 'd') deflate_write(c, p, n, Z_SYNC_FLUSH); else lower_write(c, p, n);
}
static void hangup(conn_t *c) {
  if (c->zip == 'd') deflate_write(c, "", 0, Z_FINISH);
  if (c->ssl) SSL_shutdown(c->ssl);
  close(c->fd);
}
#else
static ssize_t conn_read(conn_t *c, char *p, size_t n) { return read(c->fd, p, n); }
static void conn_write(conn_t *c, const char *p, size_t n) { writeall(c->fd, p, n); }
static void hangup(conn_t *c) { close(c->fd); }
#endif

typedef struct { conn_t *c; char *buf; size_t cap, lo, hi; } rd_t;
/* next frame: returns type, sets *data/*len; refills only when needed */
static int frame(rd_t *r, char **data, uint32_t *len) {
  for (;;) {
    if (r->hi - r->lo >= 8) {
      uint32_t sz = get32(r->buf + r->lo);
      if (r->hi - r->lo >= 4 + sz) {
        int type = (int)get32(r->buf + r->lo + 4);
        *data = r->buf + r->lo + 8; *len = sz - 4; r->lo += 4 + sz;
        return type;
      }
      if (4 + sz > r->cap) { r->cap = 4 + sz; r->buf = realloc(r->buf, r->cap); }
    }
    if (r->lo) { memmove(r->buf, r->buf + r->lo, r->hi - r->lo); r->hi -= r->lo; r->lo = 0; }
    ssize_t n = conn_read(r->c, r->buf + r->hi, r->cap - r->hi);
    if (n <= 0) return -1;
    r->hi += n;
  }
}
static int buffered(rd_t *r) {
  return r->hi - r->lo >= 8 && r->hi - r->lo >= 4 + get32(r->buf + r->lo);
}

#ifdef NSQLOAD_TRANSPORTS
/* does IDENTIFY's JSON answer say "key":true */
static int granted(const char *d, uint32_t l, const char *key) {
  char k[32];
  int kn = snprintf(k, sizeof k, "\"%s\"", key);
  const char *p = memmem(d, l, k, kn), *e = d + l;
  if (!p) return 0;
  for (p += kn; p < e && *p && strchr(" \t\r\n:", *p); p++);
  return e - p >= 4 && !memcmp(p, "true", 4);
}
static void expect_ok(rd_t *r, const char *upgrade) {
  char *d; uint32_t l;
  int t = frame(r, &d, &l);
  if (t == 0 && l == 2 && !memcmp(d, "OK", 2)) return;
  if (t < 0) fprintf(stderr, "no OK after the %s upgrade: closed\n", upgrade);
  else fprintf(stderr, "no OK after the %s upgrade: %.*s\n", upgrade, (int)l, d);
  exit(2);
}
/* IDENTIFY asking for the transport, then each upgrade in nsqd's order, each followed by an OK */
static void negotiate(rd_t *r) {
  conn_t *c = r->c;
  int want_tls = !strncmp(transport, "tls", 3);
  const char *zip = strstr(transport, "snappy") ? "snappy" : strstr(transport, "deflate") ? "deflate" : NULL;
  char cmd[512], *d; uint32_t l;
  int k = snprintf(cmd + 13, sizeof cmd - 13, "{\"client_id\":\"nsqload\",\"hostname\":\"nsqload\","
                   "\"user_agent\":\"nsqload\",\"feature_negotiation\":true,\"tls_v1\":%s,\"snappy\":%s,"
                   "\"deflate\":%s%s}", want_tls ? "true" : "false", zip && *zip == 's' ? "true" : "false",
                   zip && *zip == 'd' ? "true" : "false", zip && *zip == 'd' ? ",\"deflate_level\":6" : "");
  memcpy(cmd, "IDENTIFY\n", 9); put32(cmd + 9, k);
  conn_write(c, cmd, 13 + k);
  int t = frame(r, &d, &l);
  if (t < 0) fail("IDENTIFY failed: closed");
  if (t != 0) { fprintf(stderr, "IDENTIFY failed: %.*s\n", (int)l, d); exit(2); }
  if ((want_tls && !granted(d, l, "tls_v1")) || (zip && !granted(d, l, zip))) {
    fprintf(stderr, "the server did not grant %s: %.*s\n", transport, (int)l, d); exit(2);
  }
  if (want_tls) {
    if (r->hi != r->lo) fail("data before the TLS handshake");
    c->ssl = SSL_new(tls);
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1) {
      char e[256];
      long v = SSL_get_verify_result(c->ssl);
      if (v != X509_V_OK) snprintf(e, sizeof e, "%s", X509_verify_cert_error_string(v));
      else ERR_error_string_n(ERR_peek_last_error(), e, sizeof e);
      fprintf(stderr, "TLS handshake failed: %s\n", e); exit(2);
    }
    expect_ok(r, "TLS");
  }
  if (zip) {
    c->rcap = 1 << 17; c->raw = malloc(c->rcap); c->out = malloc(65536);
    c->wcap = 1 << 17; c->w = malloc(c->wcap);
    if (*zip == 'd' && (inflateInit2(&c->in, -15) != Z_OK
                        || deflateInit2(&c->on, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)) fail("zlib init failed");
    /* what came after the answer is the compressed stream's beginning */
    memcpy(c->raw, r->buf + r->lo, r->hi - r->lo); c->rhi = r->hi - r->lo; r->lo = r->hi = 0;
    c->zip = *zip;
    expect_ok(r, zip);
  }
}
#else
static void negotiate(rd_t *r) { (void)r; }
#endif

static void *pub(void *arg) {
  (void)arg;
  rd_t r = {dial(), malloc(1 << 16), 1 << 16, 0, 0};
  if (strcmp(transport, "plain")) negotiate(&r);
  size_t hdr = strlen("MPUB ") + strlen(topic) + 1, body = 4 + (size_t)batch * (4 + size);
  char *cmd = malloc(hdr + 4 + body), *p;
  p = cmd + sprintf(cmd, "MPUB %s\n", topic);
  put32(p, body); p += 4; put32(p, batch); p += 4;
  for (int i = 0; i < batch; i++) { put32(p, size); p += 4; memset(p, 'x', size); p += size; }
  long n = 0; double end = now() + seconds; char *d; uint32_t l;
  while (now() < end) {
    conn_write(r.c, cmd, p - cmd);
    for (;;) {
      int t = frame(&r, &d, &l);
      if (t < 0) { fprintf(stderr, "closed\n"); exit(2); }
      if (t == 0 && l == 11 && !memcmp(d, "_heartbeat_", 11)) { conn_write(r.c, "NOP\n", 4); continue; }
      if (t != 0) { fprintf(stderr, "error: %.*s\n", (int)l, d); exit(2); }
      break;
    }
    n += batch;
  }
  pthread_mutex_lock(&mu); total += n; pthread_mutex_unlock(&mu);
  hangup(r.c);
  return NULL;
}

static void *sub(void *arg) {
  (void)arg;
  rd_t r = {dial(), malloc(1 << 20), 1 << 20, 0, 0};
  if (strcmp(transport, "plain")) negotiate(&r);
  char line[256];
  int k = snprintf(line, sizeof line, "SUB %s %s\n", topic, channel);
  conn_write(r.c, line, k);
  char *d; uint32_t l;
  if (frame(&r, &d, &l) != 0) { fprintf(stderr, "SUB failed: %.*s\n", (int)l, d); exit(2); }
  k = snprintf(line, sizeof line, "RDY %d\n", rdy);
  conn_write(r.c, line, k);
  size_t wcap = 1 << 20, wn = 0; char *w = malloc(wcap);
  long n = 0; double end = now() + seconds;
  struct timeval tv = {0, 200000}; setsockopt(r.c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (now() < end) {
    int t = frame(&r, &d, &l);
    if (t < 0) continue; /* read timeout: check the clock */
    if (t == 2) {
      if (wn + 22 > wcap) { conn_write(r.c, w, wn); wn = 0; }
      memcpy(w + wn, "FIN ", 4); memcpy(w + wn + 4, d + 10, 16); w[wn + 20] = '\n'; wn += 21; n++;
    } else if (t == 0 && l == 11 && !memcmp(d, "_heartbeat_", 11)) {
      memcpy(w + wn, "NOP\n", 4); wn += 4;
    } else if (t == 1) { fprintf(stderr, "error: %.*s\n", (int)l, d); }
    if (!buffered(&r) && wn) { conn_write(r.c, w, wn); wn = 0; }
  }
  pthread_mutex_lock(&mu); total += n; pthread_mutex_unlock(&mu);
  hangup(r.c);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: see the header of nsqload.c\n"); return 2; }
  int is_pub = !strcmp(argv[1], "pub");
  port = atoi(argv[2]); topic = argv[3];
  if (is_pub) { if (argc != 8 && argc != 9) return 2; size = atoi(argv[4]); batch = atoi(argv[5]); seconds = atof(argv[6]); conns = atoi(argv[7]); }
  else { if (argc != 8 && argc != 9) return 2; channel = argv[4]; seconds = atof(argv[5]); conns = atoi(argv[6]); rdy = atoi(argv[7]); }
  if (argc == 9) transport = argv[8];
  const char *known[] = {"plain", "tls", "snappy", "deflate", "tls+snappy", "tls+deflate"};
  int ok = 0;
  for (size_t i = 0; i < sizeof known / sizeof *known; i++) ok |= !strcmp(transport, known[i]);
  if (!ok) { fprintf(stderr, "unknown transport %s (plain, tls, snappy, deflate, tls+snappy, tls+deflate)\n", transport); return 2; }
#ifdef NSQLOAD_TRANSPORTS
  setup();
#else
  if (strcmp(transport, "plain")) {
    fprintf(stderr, "nsqload was built without transports: build it with -DNSQLOAD_TRANSPORTS ... -lssl -lcrypto -lz -lsnappy\n");
    return 2;
  }
#endif
  pthread_t th[256];
  double t0 = now();
  for (int i = 0; i < conns; i++) pthread_create(&th[i], NULL, is_pub ? pub : sub, NULL);
  for (int i = 0; i < conns; i++) pthread_join(th[i], NULL);
  double dt = now() - t0;
  printf("%s msgs=%ld secs=%.2f rate=%.0f\n", argv[1], total, dt, total / dt);
  return 0;
}
