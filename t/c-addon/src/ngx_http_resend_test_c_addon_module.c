/*
 * A C add-on that only a C compiler builds: if the resend_confirmation
 * module's C++ flags leaked onto it, it would not compile (-std=c++20 is
 * refused for C; "new" and "class" are keywords in C++; void * does not
 * convert implicitly), and with -fvisibility=hidden its exported function
 * would vanish from the .so (what broke lua-nginx-module's FFI).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


int ngx_http_resend_test_c_addon_exported(int class);


static ngx_http_module_t  ngx_http_resend_test_c_addon_module_ctx = {
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
};


ngx_module_t  ngx_http_resend_test_c_addon_module = {
    NGX_MODULE_V1,
    &ngx_http_resend_test_c_addon_module_ctx,
    NULL,
    NGX_HTTP_MODULE,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NGX_MODULE_V1_PADDING
};


int
ngx_http_resend_test_c_addon_exported(int class)
{
    void  *raw;
    int   *new;

    raw = &class;
    new = raw;

    return *new + 1;
}
