# Sourced by nginx's auto/make. nginx compiles every source with $(CC) and
# $(CFLAGS); our sources are C++, so give their objects (objs/addon/src/*,
# objs/addon/core/*) C++ flags through GNU make pattern-specific variables,
# which apply to rules written before or after this point. C-only warnings
# are filtered out of CFLAGS for them.

resend_confirmation_c_only="-Wdeclaration-after-statement -Wstrict-prototypes -Wmissing-prototypes -Wold-style-definition -Wnested-externs -Wbad-function-cast -Wmissing-declarations"
resend_confirmation_cxx="-std=c++20 -fno-exceptions -fno-rtti -fvisibility=hidden -fvisibility-inlines-hidden"

for resend_confirmation_dir in src core
do
    cat << END                                                >> $NGX_MAKEFILE

$NGX_OBJS/addon/$resend_confirmation_dir/%.$ngx_objext: CFLAGS := \$(filter-out $resend_confirmation_c_only,\$(CFLAGS)) $resend_confirmation_cxx
END
done
