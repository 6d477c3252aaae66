# shellcheck shell=bash disable=SC2154 # OUT, VERSION, sudo … are scripts/package's
# Sourced by `scripts/package --check` once the packages are built: installs them the way a
# newcomer would (dpkg -i, then apt-get -f for missing dependencies), checks what they installed
# and what their maintainer scripts did, and purges them again. Every check that fails says what
# it found; the run then exits non-zero (after purging, so a failed check leaves nothing behind).
#
# Uses from scripts/package: OUT WORK VERSION ARCH UNIT_DIR sudo die.

FAILED=0
fail() { echo "FAIL: $*" >&2; FAILED=$((FAILED + 1)); }
ok() { echo "  ok: $*"; }

PACKAGES=(otaforge otaforge-server otaforge-dbgsym otaforge-server-dbgsym)
STATE=/var/lib/otaforge

deb() { echo "$OUT/${1}_${VERSION}_${ARCH}.deb"; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# This removes the packages at the end: never on a machine where they are really installed.
refuse_if_installed() {
    local p status
    for p in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        case "$status" in
        "" | not-installed) ;;
        *) die "$p is on this machine ($status); --check would purge it. Purge it first, or check elsewhere." ;;
        esac
    done
}

install_packages() {
    echo "Installing $(basename "$(deb otaforge)") and $(basename "$(deb otaforge-server)")"
    if ! $sudo dpkg -i "$(deb otaforge)" "$(deb otaforge-server)" >/dev/null 2>"$WORK/dpkg-i.log"; then
        # Missing Depends (X11 and GL libraries on a headless machine): dpkg leaves the packages
        # unpacked, and apt fetches what they need and configures them, as a newcomer would.
        echo "  dpkg -i: missing dependencies; apt-get install -f"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -f -y -qq --no-install-recommends >/dev/null
    fi
    $sudo dpkg -i "$(deb otaforge-dbgsym)" "$(deb otaforge-server-dbgsym)" >/dev/null
    local p
    for p in "${PACKAGES[@]}"; do
        installed "$p" || fail "$p is not installed: $(dpkg-query -W -f='${Status}' "$p" 2>&1); see $WORK/dpkg-i.log"
    done
}

check_commands() {
    local cmd path out want=${VERSION//\~/-}
    for cmd in otaforge otaforge-server; do
        path=$(command -v "$cmd") || { fail "$cmd is not on PATH"; continue; }
        # A developer's ~/.cargo/bin may come first: a note, not a packaging fault.
        [ "$path" = "/usr/bin/$cmd" ] || echo "  note: $cmd on PATH is $path; checking /usr/bin/$cmd"
        out=$("/usr/bin/$cmd" --version 2>&1) || { fail "/usr/bin/$cmd --version failed: $out"; continue; }
        [ "$out" = "otaforge $want" ] || { fail "/usr/bin/$cmd --version said '$out', not 'otaforge $want'"; continue; }
        ok "$cmd --version: $out"
    done
}

check_stripped() {
    # DWARF's sections (.debug_gdb_scripts, which only names gdb's pretty-printers, stays).
    local bin dwarf='\.debug_(info|line|str|abbrev|ranges|rnglists|loc|loclists|aranges|addr)\b'
    for bin in /usr/bin/otaforge /usr/bin/otaforge-server; do
        if readelf -S -W "$bin" | grep -Eq "$dwarf"; then
            fail "$bin still has debug sections: $(readelf -S -W "$bin" | grep -Eo "$dwarf" | tr '\n' ' ')"
        else
            ok "$bin is stripped ($(($(stat -c %s "$bin") / 1024 / 1024)) MB)"
        fi
    done
}

# A panic of the installed binary (printing to a full disk) must name our source file and line:
# the proof that the -dbgsym package's file is found, by build ID, without the source or the
# build tree (the check runs from /).
check_backtrace() {
    local bin out
    for bin in /usr/bin/otaforge /usr/bin/otaforge-server; do
        out=$(cd / && RUST_BACKTRACE=1 "$bin" config-block-header 2>&1 >/dev/full) || true
        if ! grep -q 'panicked' <<<"$out"; then
            fail "$bin config-block-header >/dev/full did not panic: $out"
        elif ! grep -Eq 'at .*app/src/[a-z_/]+\.rs:[0-9]+' <<<"$out"; then
            fail "$bin: backtrace without file:line of app/src: $(head -c 2000 <<<"$out")"
        else
            ok "$bin backtrace: $(grep -Eo 'app/src/[a-z_/]+\.rs:[0-9]+' <<<"$out" | head -1)"
        fi
    done
}

check_desktop_entry() {
    local f=/usr/share/applications/otaforge.desktop out
    [ -f "$f" ] || { fail "$f is not installed"; return; }
    if out=$(desktop-file-validate "$f" 2>&1) && [ -z "$out" ]; then
        ok "desktop-file-validate $f"
    else
        fail "desktop-file-validate $f: $out"
    fi
    local icon
    for icon in scalable/apps/otaforge.svg 64x64/apps/otaforge.png 256x256/apps/otaforge.png; do
        [ -s "/usr/share/icons/hicolor/$icon" ] || fail "icon /usr/share/icons/hicolor/$icon is not installed"
    done
    ok "icons in /usr/share/icons/hicolor"
}

# systemd-analyze reads the unit as systemd would (unknown keys, a missing ExecStart binary or
# User included); anything it prints is a problem. `security` scores the hardening.
check_unit() {
    local unit=$UNIT_DIR/otaforge-server.service out
    [ -f "$unit" ] || { fail "$unit is not installed"; return; }
    if out=$(systemd-analyze verify "$unit" 2>&1) && [ -z "$out" ]; then
        ok "systemd-analyze verify $unit"
    else
        fail "systemd-analyze verify $unit: $out"
    fi
    # Offline scoring needs systemd 250; older ones cannot, which is no fault of the unit.
    if out=$(systemd-analyze security --offline=yes --no-pager "$unit" 2>&1); then
        ok "systemd-analyze security: $(grep -o 'Overall exposure level.*' <<<"$out")"
    fi
}

check_conffile() {
    local list
    list=$(dpkg-query --control-show otaforge-server conffiles 2>/dev/null || true)
    if grep -qx '/etc/otaforge/server.conf' <<<"$list"; then
        ok "/etc/otaforge/server.conf is a conffile"
    else
        fail "/etc/otaforge/server.conf is not in otaforge-server's conffiles: '$list'"
    fi
}

check_user_and_state() {
    local entry
    if ! entry=$(getent passwd otaforge); then
        fail "postinst did not create the otaforge user"
        return
    fi
    local uid home shell
    IFS=: read -r _ _ uid _ _ home shell <<<"$entry"
    [ "$uid" -lt 1000 ] || fail "otaforge is not a system user (uid $uid)"
    [ "$home" = "$STATE" ] || fail "otaforge's home is $home, not $STATE"
    case "$shell" in */nologin | */false) ;; *) fail "otaforge can log in (shell $shell)" ;; esac
    ok "user otaforge (uid $uid, home $home, shell $shell)"
    [ -d "$STATE" ] || { fail "postinst did not create $STATE"; return; }
    local mode owner
    mode=$(stat -c %a "$STATE")
    owner=$(stat -c %U "$STATE")
    [ "$owner" = otaforge ] || fail "$STATE is owned by $owner, not otaforge"
    [ $((8#$mode & 8#077)) -eq 0 ] || fail "$STATE is mode $mode: others can read the private keys"
    ok "$STATE: owner $owner, mode $mode"
}

# The service's first run, as the conf file tells it, under the service's user and directory:
# without a certificate `serve` must say which command makes one; with one, it serves, taking
# its settings from OTAFORGE_* variables as the EnvironmentFile gives them.
check_first_run() {
    local as=(runuser -u otaforge --) out pid log=$WORK/serve.log
    if [ -n "$($sudo ls -A "$STATE")" ]; then
        echo "  note: $STATE is not empty (a project from before): first run not checked"
        return
    fi
    out=$($sudo "${as[@]}" env OTAFORGE_DIR="$STATE" /usr/bin/otaforge-server serve 2>&1) || true
    if grep -q "otaforge-server --dir $STATE cert new --host HOST" <<<"$out"; then
        ok "serve without a certificate: $(head -1 <<<"$out")"
    else
        fail "serve without a certificate did not name the cert command: $out"
    fi
    $sudo "${as[@]}" /usr/bin/otaforge-server --dir "$STATE" cert new --host localhost >/dev/null \
        || { fail "cert new as the otaforge user failed"; return; }
    $sudo "${as[@]}" env OTAFORGE_DIR="$STATE" OTAFORGE_BIND=127.0.0.1 OTAFORGE_PORT=0 \
        /usr/bin/otaforge-server serve >"$log" 2>&1 &
    pid=$!
    local _
    for _ in $(seq 50); do grep -q 'Serving updates' "$log" && break; sleep 0.1; done
    # runuser (and sudo) pass the SIGTERM on to the server, which stops as under systemd.
    $sudo kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if grep -q 'Serving updates on https://127\.0\.0\.1:[1-9]' "$log"; then
        ok "serve as otaforge with OTAFORGE_BIND/OTAFORGE_PORT: $(grep -o 'https://[^ ]*' "$log" | head -1)"
    else
        fail "serve with a certificate did not start as configured: $(cat "$log")"
    fi
    local key
    for key in "$STATE"/*.key; do
        [ "$(stat -c %a "$key")" = 600 ] || fail "$key is mode $(stat -c %a "$key"), not 600"
    done
}

purge_packages() {
    echo "Purging ${PACKAGES[*]}"
    $sudo dpkg --purge "${PACKAGES[@]}" >/dev/null 2>&1 || fail "dpkg --purge failed"
}

check_purged() {
    local p f
    for p in "${PACKAGES[@]}"; do
        ! installed "$p" || fail "$p is still installed after purge"
    done
    for f in /usr/bin/otaforge /usr/bin/otaforge-server /usr/share/applications/otaforge.desktop \
        "$UNIT_DIR/otaforge-server.service" /etc/otaforge/server.conf /etc/otaforge; do
        [ ! -e "$f" ] || fail "$f is still there after purge"
    done
    [ "$FAILED" -gt 0 ] || ok "purged: no binary, desktop entry, unit or conffile left"
}

# What the check made that a real install would keep (the user, the project): removed again if
# it was not there before, so a developer's machine ends as it started.
remember_state() {
    HAD_USER=0 HAD_STATE=0
    getent passwd otaforge >/dev/null && HAD_USER=1
    [ -e "$STATE" ] && HAD_STATE=1
    true
}

forget_state() {
    [ "$HAD_STATE" = 1 ] || $sudo rm -rf "$STATE"
    [ "$HAD_USER" = 1 ] || ! getent passwd otaforge >/dev/null || $sudo userdel otaforge
}

check_packages() {
    echo "Checking the packages"
    refuse_if_installed
    remember_state
    trap 'purge_packages; forget_state' EXIT
    install_packages
    check_commands
    check_stripped
    check_backtrace
    check_desktop_entry
    check_unit
    check_conffile
    check_user_and_state
    check_first_run
    trap - EXIT
    purge_packages
    check_purged
    forget_state
    if [ "$FAILED" -gt 0 ]; then
        echo "scripts/package --check: $FAILED check(s) failed" >&2
        exit 1
    fi
    echo "scripts/package --check: all checks passed"
}
