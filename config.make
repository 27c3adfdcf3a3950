# Sourced by nginx's auto/make after it has written the rules of every
# add-on object. nginx compiles every source with $(CC) $(CFLAGS); ours are
# C++, so each of OUR objects, named one by one, gets its own CFLAGS through a
# GNU make target-specific variable. Objects of other add-ons stay untouched,
# even those that share a folder name with ours (nginx puts every add-on's
# src/foo.c in objs/addon/src/).
#
# Their CFLAGS are nginx's, less the flags that the C++ compiler refuses
# (C-only warnings such as -Wstrict-prototypes, or a --with-cc-opt such as
# -Werror=implicit-function-declaration), found by asking the compiler about
# each flag rather than by a list, plus this module's C++ flags (config).

resend_confirmation_probe=$NGX_OBJS/resend_confirmation_probe
echo "int resend_confirmation_probe;" > $resend_confirmation_probe.cpp

# resend_confirmation_cxx_accepts FLAGS: does the C++ compiler take FLAGS
# without a word (as an error under -Werror)?
resend_confirmation_cxx_accepts() {
    $CC -x c++ -Werror $1 -c -o $resend_confirmation_probe.o \
        $resend_confirmation_probe.cpp >> $NGX_AUTOCONF_ERR 2>&1
}

resend_confirmation_cflags=
if resend_confirmation_cxx_accepts "$CFLAGS"; then
    resend_confirmation_cflags=$CFLAGS
else
    # One flag at a time; a word that does not start with "-" is the
    # argument of the flag before it (-include file.h) and goes with it.
    resend_confirmation_flag=
    for resend_confirmation_word in $CFLAGS ""
    do
        case "$resend_confirmation_word" in
            -*|"")
                if [ -n "$resend_confirmation_flag" ]; then
                    if resend_confirmation_cxx_accepts "$resend_confirmation_flag"; then
                        resend_confirmation_cflags="$resend_confirmation_cflags $resend_confirmation_flag"
                    else
                        echo " + $ngx_addon_name: not for C++: $resend_confirmation_flag"
                    fi
                fi
                resend_confirmation_flag=$resend_confirmation_word
                ;;
            *)
                resend_confirmation_flag="$resend_confirmation_flag $resend_confirmation_word"
                ;;
        esac
    done
fi
rm -f $resend_confirmation_probe.cpp $resend_confirmation_probe.o

cat << END                                                    >> $NGX_MAKEFILE

RESEND_CONFIRMATION_CFLAGS = $resend_confirmation_cflags $RESEND_CONFIRMATION_CXXFLAGS
END

# Each object's path as auto/make names it: objs/addon/<folder>/<name>.o.
for resend_confirmation_src in $RESEND_CONFIRMATION_SRCS
do
    resend_confirmation_obj=`basename $resend_confirmation_src .cpp`
    resend_confirmation_obj="$NGX_OBJS/addon/`basename \`dirname $resend_confirmation_src\``/$resend_confirmation_obj.$ngx_objext"
    cat << END                                                >> $NGX_MAKEFILE
$resend_confirmation_obj: CFLAGS = \$(RESEND_CONFIRMATION_CFLAGS)
END
done
