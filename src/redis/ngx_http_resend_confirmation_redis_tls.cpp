// TLS to Redis, with nginx's own OpenSSL layer (ngx_ssl_*):
//
// - configuration: the `tls`, `tls_verify=`, `tls_ca=`, `tls_cert=`,
//   `tls_key=` and `tls_name=` parameters of resend_confirmation_redis, and
//   one SSL context per directive, made when the configuration is read (so
//   that nginx -t loads the files) and freed with the configuration's pool;
// - the handshake on the link's connection, after TCP connect and before
//   AUTH/SELECT, then the certificate's chain and name are checked, the way
//   nginx checks proxy_ssl_verify: the handshake itself never fails on the
//   certificate, the result is looked at once it is over and before anything
//   is written;
// - the session of the last handshake, kept per worker to resume on reconnect;
// - a hint in the log when a plain link seems to talk to a TLS port, or a
//   TLS link without a client certificate to a Redis that requires one.

#include "redis/ngx_http_resend_confirmation_link.h"

struct ngx_http_resend_confirmation_tls_conf_s {
    bool enabled;          // `tls`
    ngx_flag_t verify;     // tls_verify=, NGX_CONF_UNSET until given
    ngx_str_t ca;          // tls_ca=; empty: the system's default CA store
    ngx_str_t cert, key;   // tls_cert=, tls_key=: the client certificate
    ngx_str_t name;        // tls_name= or the address's host, NUL-terminated
    bool name_is_ip;       // verified as an IP address, never sent as SNI
#if (NGX_SSL)
    ngx_ssl_t ssl;
    // The session to resume. The configuration is this worker's own copy
    // after fork, and a directive has one link per worker: one slot each.
    ngx_ssl_session_t *session;
#endif
};

namespace {

// Certificates of managed services come through an intermediate or two.
[[maybe_unused]] const ngx_int_t verify_depth = 9;

#if (NGX_SSL)
// The SSL_CTX's ex_data slot that points back at its tls conf.
int tls_conf_index = -1;
#endif

// A copy of `s` ending in NUL (SNI and the verified name are C strings).
bool copy_cstring(ngx_pool_t *pool, const ngx_str_t &s, ngx_str_t *out) {
    out->data = static_cast<u_char *>(ngx_pnalloc(pool, s.len + 1));
    if (out->data == nullptr) return false;
    ngx_memcpy(out->data, s.data, s.len);
    out->data[s.len] = '\0';
    out->len = s.len;
    return true;
}

[[maybe_unused]] bool is_ip_literal(const ngx_str_t &name) {
    if (ngx_inet_addr(name.data, name.len) != INADDR_NONE) return true;
#if (NGX_HAVE_INET6)
    u_char addr6[16];
    if (ngx_inet6_addr(name.data, name.len, addr6) == NGX_OK) return true;
#endif
    return false;
}

}  // namespace

ngx_int_t ngx_http_resend_confirmation_tls_parameter(ngx_conf_t *cf,
                                                     ngx_http_resend_confirmation_redis_conf_t *redis,
                                                     ngx_str_t *value) noexcept {
    ngx_str_t arg;
    bool is_tls = ngx_http_resend_confirmation_is(*value, "tls");
    if (!is_tls && !ngx_http_resend_confirmation_has_prefix(*value, "tls_", &arg)) return NGX_DECLINED;

    if (redis->tls == nullptr) {
        redis->tls = static_cast<ngx_http_resend_confirmation_tls_conf_t *>(
            ngx_pcalloc(cf->pool, sizeof(ngx_http_resend_confirmation_tls_conf_t)));
        if (redis->tls == nullptr) return NGX_ERROR;
        redis->tls->verify = NGX_CONF_UNSET;
    }
    auto *tls = redis->tls;
    if (is_tls) {
        tls->enabled = true;
    } else if (ngx_http_resend_confirmation_has_prefix(*value, "tls_verify=", &arg)) {
        if (ngx_http_resend_confirmation_is(arg, "on")) {
            tls->verify = 1;
        } else if (ngx_http_resend_confirmation_is(arg, "off")) {
            tls->verify = 0;
        } else {
            return NGX_ERROR;
        }
    } else if (ngx_http_resend_confirmation_has_prefix(*value, "tls_ca=", &arg) && arg.len > 0) {
        tls->ca = arg;
    } else if (ngx_http_resend_confirmation_has_prefix(*value, "tls_cert=", &arg) && arg.len > 0) {
        tls->cert = arg;
    } else if (ngx_http_resend_confirmation_has_prefix(*value, "tls_key=", &arg) && arg.len > 0) {
        tls->key = arg;
    } else if (ngx_http_resend_confirmation_has_prefix(*value, "tls_name=", &arg) && arg.len > 0) {
        if (!copy_cstring(cf->pool, arg, &tls->name)) return NGX_ERROR;
    } else {
        return NGX_ERROR;
    }
    return NGX_OK;
}

#if (NGX_SSL)

// The worker's session of a configuration that goes (a reload without a
// master process; workers simply exit).
static void ngx_http_resend_confirmation_tls_forget(void *data) noexcept {
    auto *tls = static_cast<ngx_http_resend_confirmation_tls_conf_t *>(data);
    if (tls->session != nullptr) ngx_ssl_free_session(tls->session);
    tls->session = nullptr;
}

// The SSL context of one directive, freed with the configuration.
static bool ngx_http_resend_confirmation_tls_context(ngx_conf_t *cf,
                                                     ngx_http_resend_confirmation_tls_conf_t *tls) noexcept {
    tls->ssl.log = cf->log;
    if (tls_conf_index == -1) {
        tls_conf_index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
        if (tls_conf_index == -1) {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0, const_cast<char *>("SSL_CTX_get_ex_new_index() failed"));
            return false;
        }
    }
    if (ngx_ssl_create(&tls->ssl, NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3, nullptr) != NGX_OK) return false;
    ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == nullptr) {
        ngx_ssl_cleanup_ctx(&tls->ssl);
        return false;
    }
    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = &tls->ssl;
    ngx_pool_cleanup_t *forget = ngx_pool_cleanup_add(cf->pool, 0);
    if (forget == nullptr) return false;
    forget->handler = ngx_http_resend_confirmation_tls_forget;
    forget->data = tls;
    if (SSL_CTX_set_ex_data(tls->ssl.ctx, tls_conf_index, tls) != 1) {
        ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0, const_cast<char *>("SSL_CTX_set_ex_data() failed"));
        return false;
    }

    static ngx_str_t ciphers = ngx_string("DEFAULT");
    if (ngx_ssl_ciphers(cf, &tls->ssl, &ciphers, 0) != NGX_OK) return false;

    if (tls->cert.len != 0 &&
        ngx_ssl_certificate(cf, &tls->ssl, &tls->cert, &tls->key, nullptr) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "cannot load \"tls_cert=%V\" with \"tls_key=%V\"",
                           &tls->cert, &tls->key);
        return false;
    }
    if (tls->verify) {
        // ngx_ssl_trusted_certificate() installs nginx's verify callback: the
        // handshake goes on and the result is checked after it (as nginx's
        // proxy_ssl_verify), with a log line of our own naming Redis.
        if (ngx_ssl_trusted_certificate(cf, &tls->ssl, &tls->ca, verify_depth) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "cannot load \"tls_ca=%V\"", &tls->ca);
            return false;
        }
        if (tls->ca.len == 0 && SSL_CTX_set_default_verify_paths(tls->ssl.ctx) != 1) {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0, const_cast<char *>("SSL_CTX_set_default_verify_paths() failed"));
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tls_verify=on\" without \"tls_ca=\" needs the system's CA store");
            return false;
        }
    }
    // Sessions are kept for the next connection (save_session below).
    return ngx_ssl_client_session_cache(cf, &tls->ssl, 1) == NGX_OK;
}

#endif

char *ngx_http_resend_confirmation_tls_configure(ngx_conf_t *cf,
                                                 ngx_http_resend_confirmation_redis_conf_t *redis,
                                                 ngx_url_t *url) noexcept {
    auto *tls = redis->tls;
    if (tls == nullptr) return NGX_CONF_OK;
    auto fail = [cf](const char *text) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s", text);
        return ngx_http_resend_confirmation_conf_error();
    };
    if (!tls->enabled) return fail("\"tls_*=\" parameters of \"resend_confirmation_redis\" need \"tls\"");
#if !(NGX_SSL)
    (void) url;
    return fail("\"tls\" needs nginx built with OpenSSL (--with-http_ssl_module)");
#else
    if (url->family == AF_UNIX) return fail("\"tls\" needs a host:port address, not unix:");
    if (tls->cert.len != 0 && tls->key.len == 0) return fail("\"tls_cert=\" needs \"tls_key=\"");
    if (tls->key.len != 0 && tls->cert.len == 0) return fail("\"tls_key=\" needs \"tls_cert=\"");
    if (tls->verify == NGX_CONF_UNSET) tls->verify = 1;
    if (tls->verify == 0 && tls->ca.len != 0) return fail("\"tls_ca=\" is of no use with \"tls_verify=off\"");
    if (tls->verify == 0) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"tls_verify=off\": Redis's certificates are not checked, "
                           "so anyone on the path can pose as Redis");
    }

    if (tls->name.len == 0) {
        ngx_str_t host = url->host;
        if (host.len > 2 && host.data[0] == '[') {  // [::1]
            ++host.data;
            host.len -= 2;
        }
        if (!copy_cstring(cf->pool, host, &tls->name)) return ngx_http_resend_confirmation_conf_error();
    }
    tls->name_is_ip = is_ip_literal(tls->name);

    if (!ngx_http_resend_confirmation_tls_context(cf, tls)) return ngx_http_resend_confirmation_conf_error();
    return NGX_CONF_OK;
#endif
}

#if (NGX_SSL)

static ngx_http_resend_confirmation_tls_conf_t *ngx_http_resend_confirmation_tls_of(ngx_connection_t *c) noexcept {
    return static_cast<ngx_http_resend_confirmation_tls_conf_t *>(
        SSL_CTX_get_ex_data(SSL_get_SSL_CTX(c->ssl->connection), tls_conf_index));
}

// OpenSSL has a session for the next connection (after the handshake in
// TLS 1.2, from a ticket the server sends after it in TLS 1.3).
static void ngx_http_resend_confirmation_tls_save_session(ngx_connection_t *c) noexcept {
    auto *tls = ngx_http_resend_confirmation_tls_of(c);
    ngx_ssl_session_t *session = ngx_ssl_get_session(c);
    if (session == nullptr) return;
    if (tls->session != nullptr) ngx_ssl_free_session(tls->session);
    tls->session = session;
}

// The certificate's chain and name, once the handshake is over; null when
// they are good, else why not (in `buffer`).
static const char *ngx_http_resend_confirmation_tls_verify(ngx_connection_t *c,
                                                           ngx_http_resend_confirmation_tls_conf_t *tls,
                                                           u_char *buffer, size_t size) noexcept {
    long rc = SSL_get_verify_result(c->ssl->connection);
    u_char *end;
    if (rc != X509_V_OK) {
        end = ngx_snprintf(buffer, size - 1, "TLS certificate verify error: (%l:%s)", rc,
                           X509_verify_cert_error_string(rc));
    } else {
        bool match;
        if (tls->name_is_ip) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
            X509 *cert = SSL_get1_peer_certificate(c->ssl->connection);
#else
            X509 *cert = SSL_get_peer_certificate(c->ssl->connection);
#endif
            match = cert != nullptr &&
                    X509_check_ip_asc(cert, reinterpret_cast<const char *>(tls->name.data), 0) == 1;
            if (cert != nullptr) X509_free(cert);
        } else {
            match = ngx_ssl_check_host(c, &tls->name) == NGX_OK;
        }
        if (match) return nullptr;
        end = ngx_snprintf(buffer, size - 1, "TLS certificate does not match \"%V\"", &tls->name);
    }
    *end = '\0';
    return reinterpret_cast<const char *>(buffer);
}

// The handshake is over, or failed, or timed out.
static void ngx_http_resend_confirmation_tls_done(ngx_connection_t *c) noexcept {
    auto *tls = ngx_http_resend_confirmation_tls_of(c);
    u_char why[NGX_MAX_ERROR_STR];
    const char *failure = nullptr;
    if (c->read->timedout || c->write->timedout) {
        failure = "TLS handshake timed out";
    } else if (!c->ssl->handshaked) {
        // nginx logged OpenSSL's reason just before, on c->log (which names Redis).
        failure = "TLS handshake failed";
    } else if (tls->verify) {
        failure = ngx_http_resend_confirmation_tls_verify(c, tls, why, sizeof(why));
    }
    if (failure != nullptr && tls->session != nullptr) {
        // Resume nothing from a server that failed: the next one starts afresh.
        ngx_ssl_free_session(tls->session);
        tls->session = nullptr;
    }
    ngx_http_resend_confirmation_link_secured(c, failure);
}

#endif

void ngx_http_resend_confirmation_tls_handshake(ngx_connection_t *c,
                                                ngx_http_resend_confirmation_redis_conf_t *redis,
                                                ngx_msec_t timeout) noexcept {
#if (NGX_SSL)
    auto *tls = redis->tls;
    if (ngx_ssl_create_connection(&tls->ssl, c, NGX_SSL_BUFFER | NGX_SSL_CLIENT) != NGX_OK) {
        ngx_http_resend_confirmation_link_secured(c, "cannot start TLS");
        return;
    }
    // RFC 6066: no IP address as SNI.
    if (!tls->name_is_ip &&
        SSL_set_tlsext_host_name(c->ssl->connection, reinterpret_cast<char *>(tls->name.data)) != 1) {
        ngx_ssl_error(NGX_LOG_ERR, c->log, 0, const_cast<char *>("SSL_set_tlsext_host_name(\"%V\") failed"), &tls->name);
        ngx_http_resend_confirmation_link_secured(c, "cannot start TLS");
        return;
    }
    if (tls->session != nullptr && ngx_ssl_set_session(c, tls->session) != NGX_OK) {
        ngx_http_resend_confirmation_link_secured(c, "cannot start TLS");
        return;
    }
    c->ssl->save_session = ngx_http_resend_confirmation_tls_save_session;
    c->log->action = const_cast<char *>("TLS handshaking");

    ngx_int_t rc = ngx_ssl_handshake(c);
    if (rc == NGX_AGAIN) {
        if (!c->write->timer_set) ngx_add_timer(c->write, timeout);
        c->ssl->handler = ngx_http_resend_confirmation_tls_done;
        return;
    }
    ngx_http_resend_confirmation_tls_done(c);
#else
    (void) redis;
    (void) timeout;
    ngx_http_resend_confirmation_link_secured(c, "TLS is not available");
#endif
}

void ngx_http_resend_confirmation_tls_shutdown(ngx_connection_t *c) noexcept {
#if (NGX_SSL)
    if (c->ssl == nullptr) return;
    // Redis needs no close_notify, and a link that closes must not wait.
    c->ssl->no_wait_shutdown = 1;
    c->ssl->no_send_shutdown = 1;
    (void) ngx_ssl_shutdown(c);
#else
    (void) c;
#endif
}

void ngx_http_resend_confirmation_tls_hint(ngx_log_t *log, ngx_http_resend_confirmation_redis_conf_t *redis,
                                           const ngx_str_t &name, const u_char *data, ssize_t n) noexcept {
    // Nothing listens there: not a matter of TLS.
    if (n == NGX_ERROR && ngx_socket_errno == NGX_ECONNREFUSED) return;
    const char *what, *hint;
    if (redis->tls != nullptr) {
        // TLS 1.3: a server that wants a client certificate says so after
        // the handshake, with an alert or a reset at the first read or write.
        if (n > 0 || redis->tls->cert.len != 0) return;
        what = "closed the TLS connection before any reply";
        hint = "if it requires client certificates (tls-auth-clients), add \"tls_cert=\" and \"tls_key=\"";
    } else {
        // A TLS server answers a plain command with a reset or a close (Redis),
        // or with a TLS alert record: 0x15 0x03 (or a handshake record, 0x16 0x03).
        bool tls_record = n >= 2 && (data[0] == 0x15 || data[0] == 0x16) && data[1] == 0x03;
        if (n > 0 && !tls_record) return;
        what = tls_record ? "answered with TLS" : "closed the connection before any reply";
        hint = "if it expects TLS, add \"tls\"";
    }
    ngx_log_error(NGX_LOG_WARN, log, 0, "resend_confirmation: redis %V %s: %s to \"resend_confirmation_redis\"",
                  &name, what, hint);
}
