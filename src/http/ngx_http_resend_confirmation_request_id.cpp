// $request_id, drawn by the module: the request's $request_id in nginx's
// form (32 hex digits, 128 random bits), taken from a per-worker buffer of
// OpenSSL random bytes that one RAND_bytes call refills every 256 requests,
// instead of nginx's one RAND_bytes call per request. The value is stored as
// the request's $request_id, so the access log shows the same one as the
// record. A request that already has its $request_id keeps it. (Why: the
// README's "Benchmark" section.)

#include "ngx_http_resend_confirmation.h"
#include "http/ngx_http_resend_confirmation_http.h"

#include <openssl/rand.h>

ngx_http_variable_value_t *ngx_http_resend_confirmation_request_id(ngx_http_request_t *r) noexcept {
    auto *mcf = ngx_http_resend_confirmation_main_conf(r);
    ngx_int_t index = mcf->request_id_index;
    ngx_http_variable_value_t *value = &r->variables[index];
    if (value->valid || value->not_found) return value;  // already drawn for this request

    static u_char random[4096];
    static size_t used = sizeof(random);
    if (used + 16 > sizeof(random)) {
        if (RAND_bytes(random, sizeof(random)) != 1) {
            return ngx_http_get_indexed_variable(r, index);  // nginx's own way
        }
        used = 0;
    }
    auto *hex = static_cast<u_char *>(ngx_pnalloc(r->pool, 32));
    if (hex == nullptr) return nullptr;
    ngx_hex_dump(hex, random + used, 16);
    ngx_explicit_memzero(random + used, 16);  // drawn once, never reused
    used += 16;
    value->data = hex;
    value->len = 32;
    value->valid = 1;
    value->no_cacheable = 0;
    value->not_found = 0;
    return value;
}
