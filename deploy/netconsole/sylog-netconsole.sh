#!/usr/bin/env bash
# sylog-netconsole: send this host's kernel messages to a sylog receiver with netconsole (UDP, sent from inside
# the kernel, so the last lines of a panic still get out after user space - and rsyslog - are gone).
#
# Usage:
#   sylog-netconsole --receiver IP [--port 6666] [--interface eth0] [--extended] [--persistent]
#                    [--local-ip IP] [--remote-mac MAC] [--target NAME] [--dry-run]
#
# What it does (see the kernel's Documentation/networking/netconsole.rst):
#   1. Finds the interface and source address the kernel uses to reach the receiver (`ip route get`), and the
#      MAC address of the next hop - the receiver itself on the same subnet, else the gateway (`ip neigh`,
#      after one ping to fill the neighbour table). netconsole sends raw frames from the kernel and cannot ask
#      ARP at panic time, so the MAC must be given; without it frames go to the broadcast address.
#   2. Now: loads the netconsole module and configures a target through configfs
#      (/sys/kernel/config/netconsole/<target>/{dev_name,local_ip,remote_ip,remote_mac,remote_port,extended,
#      enabled}; needs CONFIG_NETCONSOLE_DYNAMIC). Without configfs support it reloads the module with the
#      parameter form instead:
#          netconsole=[+][src-port]@[src-ip]/[<dev>],[tgt-port]@<tgt-ip>/[tgt-macaddr]      ('+' = extended)
#   3. With --persistent: writes /etc/modprobe.d/netconsole.conf (options netconsole netconsole=...) and
#      /etc/modules-load.d/netconsole.conf so the module comes back with the same target after a reboot.
#      (Targets made from the module parameter are not visible in configfs; that is expected.)
#   --extended: the extended format (sequence numbers, timestamps, fragments of long messages) - sylog parses it
#      and joins fragments; use it unless the kernel is older than 4.1.
#   --dry-run: print the commands and files instead of running/writing them.
#
# Check afterwards: `dmesg | grep -i netconsole` ("network logging started"); on the receiver, run
# `echo "<6>sylog netconsole test" > /dev/kmsg` here and look for the line in sylog's timeline for this host.
# Raise the console log level if only some messages arrive: `dmesg -n 8` (or loglevel=8 on the kernel command line).
set -euo pipefail

RECEIVER=""
PORT=6666
IFACE=""
LOCAL_IP=""
REMOTE_MAC=""
TARGET="sylog"
EXTENDED=0
PERSISTENT=0
DRY_RUN=0
CONFIGFS=/sys/kernel/config/netconsole
MODPROBE_CONF=/etc/modprobe.d/netconsole.conf
MODULES_LOAD_CONF=/etc/modules-load.d/netconsole.conf

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
    echo "sylog-netconsole: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --receiver) RECEIVER="${2:?--receiver needs an IP address}"; shift 2 ;;
        --port) PORT="${2:?--port needs a number}"; shift 2 ;;
        --interface) IFACE="${2:?--interface needs a name}"; shift 2 ;;
        --local-ip) LOCAL_IP="${2:?--local-ip needs an address}"; shift 2 ;;
        --remote-mac) REMOTE_MAC="${2:?--remote-mac needs a MAC address}"; shift 2 ;;
        --target) TARGET="${2:?--target needs a name}"; shift 2 ;;
        --extended) EXTENDED=1; shift ;;
        --persistent) PERSISTENT=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

[ -n "$RECEIVER" ] || die "--receiver IP is required"
case "$PORT" in ''|*[!0-9]*) die "--port must be a number" ;; esac
if [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then die "--port must be 1-65535"; fi
case "$TARGET" in ''|*/*|.*) die "--target must be a plain name" ;; esac
# netconsole takes addresses, not names: the kernel cannot resolve DNS at panic time.
if ! [[ "$RECEIVER" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || "$RECEIVER" == *:* ]]; then
    die "--receiver must be an IP address, not a name ($RECEIVER)"
fi
if [ -n "$REMOTE_MAC" ] && ! [[ "$REMOTE_MAC" =~ ^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$ ]]; then
    die "--remote-mac must look like 12:34:56:78:9a:bc"
fi

# run CMD...: execute, or print it under --dry-run.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# write_file PATH CONTENT: write a file, or show it under --dry-run.
write_file() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '+ write %s:\n%s\n' "$1" "$2"
    else
        mkdir -p "$(dirname "$1")"
        printf '%s\n' "$2" > "$1"
    fi
}

# set_attr NAME VALUE: one configfs attribute of the target.
set_attr() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '+ echo %q > %s\n' "$2" "$CONFIGFS/$TARGET/$1"
    else
        printf '%s\n' "$2" > "$CONFIGFS/$TARGET/$1"
    fi
}

# 1. Route: interface, source address and next hop towards the receiver.
route="$(ip route get "$RECEIVER" 2>/dev/null | head -n 1)" || route=""
field() {  # field NAME: the word after NAME in the route line ("... via GW dev eth0 src 10.0.0.5 ...")
    awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) {print $(i + 1); exit}}' <<<"$route"
}
route_dev="$(field dev)"
route_src="$(field src)"
route_via="$(field via)"
[ -n "$IFACE" ] || IFACE="$route_dev"
[ -n "$LOCAL_IP" ] || LOCAL_IP="$route_src"
[ -n "$IFACE" ] || die "cannot find the interface that routes to $RECEIVER; give --interface"
[ -n "$LOCAL_IP" ] || die "cannot find the source address towards $RECEIVER; give --local-ip"
NEXT_HOP="${route_via:-$RECEIVER}"

if [ -z "$REMOTE_MAC" ]; then
    if [ "$DRY_RUN" = 0 ]; then  # fill the neighbour table; failure is fine
        ping -c 1 -W 1 "$NEXT_HOP" >/dev/null 2>&1 || true
    fi
    REMOTE_MAC="$(ip neigh show "$NEXT_HOP" dev "$IFACE" 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "lladdr") {print $(i + 1); exit}}')" || REMOTE_MAC=""
    if [ -z "$REMOTE_MAC" ]; then
        echo "sylog-netconsole: warning: no MAC address for next hop $NEXT_HOP on $IFACE; frames go to the" \
             "Ethernet broadcast address (give --remote-mac to avoid that)" >&2
    fi
fi

PLUS=""
[ "$EXTENDED" = 1 ] && PLUS="+"
# The kernel's parameter form; IPv6 addresses go in as they are ("@/,@fd00:1:2:3::1/" in netconsole.rst).
PARAM="${PLUS}@${LOCAL_IP}/${IFACE},${PORT}@${RECEIVER}/${REMOTE_MAC}"

echo "netconsole: ${IFACE} (${LOCAL_IP}) -> ${RECEIVER}:${PORT} via ${NEXT_HOP} mac ${REMOTE_MAC:-broadcast}" \
     "extended=${EXTENDED}"

# 2. Configure now: configfs (dynamic) if available, else the module parameter.
run modprobe configfs || true
if [ "$DRY_RUN" = 0 ] && [ -d /sys/kernel/config ] && ! mountpoint -q /sys/kernel/config; then
    mount -t configfs none /sys/kernel/config || true
fi
if [ "$DRY_RUN" = 0 ] && ! grep -qw netconsole /proc/modules 2>/dev/null; then
    modprobe netconsole || true
fi
if [ "$DRY_RUN" = 1 ] || [ -d "$CONFIGFS" ]; then
    echo "configuring target $TARGET through configfs ($CONFIGFS/$TARGET)"
    if [ -d "$CONFIGFS/$TARGET" ]; then
        set_attr enabled 0
    else
        run mkdir "$CONFIGFS/$TARGET"
    fi
    set_attr dev_name "$IFACE"
    set_attr local_ip "$LOCAL_IP"
    set_attr remote_ip "$RECEIVER"
    [ -n "$REMOTE_MAC" ] && set_attr remote_mac "$REMOTE_MAC"
    set_attr remote_port "$PORT"
    set_attr extended "$EXTENDED"
    set_attr enabled 1
else
    echo "no netconsole configfs (CONFIG_NETCONSOLE_DYNAMIC); loading the module with netconsole=$PARAM"
    run modprobe -r netconsole || true
    run modprobe netconsole "netconsole=$PARAM"
fi

# 3. Persist across reboots.
if [ "$PERSISTENT" = 1 ]; then
    write_file "$MODPROBE_CONF" "# written by sylog-netconsole: kernel messages to ${RECEIVER}:${PORT} (sylog)
options netconsole netconsole=${PARAM}"
    write_file "$MODULES_LOAD_CONF" "# written by sylog-netconsole: load netconsole at boot (options in ${MODPROBE_CONF})
netconsole"
    echo "persistent: $MODPROBE_CONF and $MODULES_LOAD_CONF (a configfs target from step 2 is not kept across" \
         "reboots; the module parameter recreates the target at boot)"
fi
