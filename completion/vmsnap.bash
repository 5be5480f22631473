# bash completion for vmsnap(1)                             -*- shell-script -*-
#
# Installed as "vmsnap" in bash-completion's completions directory (loaded on
# first use); it also works on its own: ". vmsnap.bash" in ~/.bashrc.
#
# What it offers, and where it asks:
#   commands and each command's options  vmsnap --help, vmsnap CMD --help-all
#                                        (so new options need no change here)
#   DOMAIN                               virsh -r list --all --name (on the
#                                        --connect URI of the line), *.xml
#                                        files and directories
#   (check, like every command, is read from vmsnap --help)
#   NAME of revert, delete, info         vmsnap list --names --no-wait DOMAIN
#   --backend TARGET=NAME                disk targets, then loaded backends
#   --disk TARGET                        the domain's disk targets
#   -o SECTION.KEY=VALUE                 the keys of vmsnap.conf(5)
# virsh and vmsnap list run with a time limit and stdin closed: a host
# without libvirtd, a domain locked by a long operation or an unreachable
# URI never hangs the shell.

_vmsnap_time_limit=2    # seconds

# _vmsnap_run CMD ARG...: CMD's stdout, within the time limit.
_vmsnap_run ()
{
    if type -P timeout >/dev/null 2>&1; then
        timeout -k 1 "$_vmsnap_time_limit" "$@" </dev/null 2>/dev/null
    else
        "$@" </dev/null 2>/dev/null
    fi
}

# _vmsnap_dequote WORD: WORD without surrounding quotes or backslashes,
# with a leading ~/ expanded (no eval: nothing on the line is executed).
_vmsnap_dequote ()
{
    local w=$1
    case $w in
        \'*\') w=${w:1:${#w}-2} ;;
        \"*\") w=${w:1:${#w}-2} ;;
        *) w=${w//\\/} ;;
    esac
    [[ $w == "~/"* ]] && w=$HOME/${w:2}
    printf '%s\n' "$w"
}

# Set _vmsnap_words and _vmsnap_cword from COMP_WORDS and COMP_CWORD, with
# the words bash split at '=' or ':' (COMP_WORDBREAKS) joined again as typed
# ("--backend vda=qcow2-ext", "qemu:///system").  Needs COMP_LINE to see
# where the user put spaces; without it the words stay as they are.
_vmsnap_split ()
{
    local i tok line=${COMP_LINE-} glued
    _vmsnap_words=() _vmsnap_cword=0
    for (( i = 0; i < ${#COMP_WORDS[@]}; i++ )); do
        tok=${COMP_WORDS[i]}
        glued=0
        if [[ -n $line ]]; then
            if [[ $line =~ ^[[:space:]]+ ]]; then
                line=${line:${#BASH_REMATCH[0]}}
            elif (( i > 0 )); then
                glued=1
            fi
            line=${line#"$tok"}
        fi
        if (( glued )) && [[ $tok == [=:]* || ${_vmsnap_words[-1]} == *[=:] ]]; then
            _vmsnap_words[-1]+=$tok
        else
            _vmsnap_words+=("$tok")
        fi
        (( i == COMP_CWORD )) && _vmsnap_cword=$(( ${#_vmsnap_words[@]} - 1 ))
    done
}

# _vmsnap_reply CANDIDATE...: COMPREPLY gets the candidates that start with
# the current word, less the part of it that readline does not replace
# (what precedes, and includes, the last '=' or ':').
_vmsnap_reply ()
{
    local c
    for c in "$@"; do
        [[ $c == "$_vmsnap_cur"* ]] && COMPREPLY+=("${c#"$_vmsnap_strip"}")
    done
}

_vmsnap_nospace ()
{
    compopt -o nospace 2>/dev/null || :
}

# The commands vmsnap --help lists, as "NAME ARGS" lines.
_vmsnap_commands ()
{
    "$1" --help 2>/dev/null | sed -n '/^Commands:/,/^$/{/^  [a-z]/p}'
}

# The options of COMMAND from its --help-all: "--long", "-s", and a trailing
# "=" on those that take a value.
_vmsnap_options ()
{
    local line o arg
    while IFS= read -r line; do
        [[ $line =~ ^[[:space:]]+(-[[:alnum:]],[[:space:]]+)?(--[[:alnum:]-]+)(=[^[:space:]]+)? ]] || continue
        o=${BASH_REMATCH[2]} arg=${BASH_REMATCH[3]:+=}
        [[ $o == --help-* ]] && continue
        printf '%s%s\n' "$o" "$arg"
        [[ -n ${BASH_REMATCH[1]} ]] && printf '%s%s\n' "${BASH_REMATCH[1]%%,*}" "$arg"
    done < <("$1" "$2" --help-all 2>/dev/null)
}

# libvirt domains on URI (may be empty: libvirt's default).
_vmsnap_domains ()
{
    type -P virsh >/dev/null 2>&1 || return 0
    _vmsnap_run virsh -q -r ${1:+-c "$1"} list --all --name
}

# The disk targets of DOMAIN (an XML file, else a libvirt domain on URI).
_vmsnap_targets ()
{
    local dom=$1 uri=$2
    if [[ $dom == */* || ( $dom == *.xml && -f $dom ) ]]; then
        [[ -r $dom ]] || return 0
        sed -n '/<disk[[:space:]>]/,/<\/disk>/p' -- "$dom" |
            sed -n "s/.*<target[^>]*dev=['\"]\([^'\"]*\)['\"].*/\1/p"
    elif type -P virsh >/dev/null 2>&1; then
        _vmsnap_run virsh -q -r ${uri:+-c "$uri"} domblklist -- "$dom" |
            while read -r t _; do [[ -n $t ]] && printf '%s\n' "$t"; done
    fi
}

# The loaded backends.
_vmsnap_backends ()
{
    local name status _
    "$1" backends 2>/dev/null | while read -r name status _; do
        [[ $status == loaded ]] && printf '%s\n' "$name"
    done
}

# The keys of vmsnap.conf(5), and the values of those that have a few.
_vmsnap_conf_keys="vmsnap.state-dir vmsnap.max-chain-depth vmsnap.quiesce vmsnap.quiesce-timeout
vmsnap.hooks-dir vmsnap.hook-timeout
lvm.snapshot-size lvm.thin-max-percent qcow2-external.luks-iter-time
rbd.revert-mode rbd.rollback-max-objects rbd.timeout rbd.delete-children
rbd.keep-old-head"

_vmsnap_conf_values ()
{
    case $1 in
        rbd.revert-mode) echo auto rollback clone ;;
        vmsnap.quiesce) echo off on best-effort ;;
        rbd.delete-children) echo flatten refuse ;;
        rbd.keep-old-head) echo true false ;;
    esac
}

# _vmsnap_value OPTION PREFIX VALUE: complete the value of OPTION; candidates
# are written as PREFIX + value (PREFIX is "--opt=" when typed so).
_vmsnap_value ()
{
    local opt=$1 pre=$2 val=$3 c t k
    case $opt in
        -c|--connect)
            _vmsnap_reply "${pre}qemu:///system" "${pre}qemu:///session" ;;
        --state-dir)
            compopt -o filenames 2>/dev/null || :
            while IFS= read -r c; do _vmsnap_reply "$pre$c"; done < <(compgen -d -- "$val") ;;
        --config)
            compopt -o filenames 2>/dev/null || :
            while IFS= read -r c; do _vmsnap_reply "$pre$c"; done < <(compgen -f -- "$val") ;;
        -b|--backend)
            if [[ $val == *=* ]]; then
                t=${val%%=*}
                while IFS= read -r c; do _vmsnap_reply "$pre$t=$c"; done < <(_vmsnap_backends "$_vmsnap_prog")
            else
                while IFS= read -r c; do _vmsnap_reply "$pre$c="; done < <(_vmsnap_targets "$_vmsnap_dom" "$_vmsnap_uri")
                _vmsnap_nospace
            fi ;;
        --disk)
            while IFS= read -r c; do _vmsnap_reply "$pre$c"; done < <(_vmsnap_targets "$_vmsnap_dom" "$_vmsnap_uri") ;;
        -o|--option)
            if [[ $val == *=* ]]; then
                k=${val%%=*}
                for c in $(_vmsnap_conf_values "$k"); do _vmsnap_reply "$pre$k=$c"; done
            else
                for k in $_vmsnap_conf_keys; do _vmsnap_reply "$pre$k="; done
                _vmsnap_nospace
            fi ;;
        --rbd-revert-mode)
            for c in auto rollback clone; do _vmsnap_reply "$pre$c"; done ;;
    esac
}

_vmsnap ()
{
    local words cword cur btok cmd args="" line i w o name
    local -a opts=() pos=() pass=()
    local -A takes=()
    local expect="" endopts=0 n_cmd_args=0 snap_names=0

    COMPREPLY=()
    _vmsnap_split
    words=("${_vmsnap_words[@]}") cword=$_vmsnap_cword
    cur=${words[cword]-} btok=${COMP_WORDS[COMP_CWORD]-}
    # Readline replaces only what follows the last word break: nothing when
    # the cursor word is the break itself ("vda=" is "vda" "=").
    _vmsnap_cur=$cur _vmsnap_strip=""
    if [[ $btok =~ ^[=:]+$ ]]; then
        _vmsnap_strip=$cur
    elif [[ $cur != "$btok" && $cur == *"$btok" ]]; then
        _vmsnap_strip=${cur:0:${#cur}-${#btok}}
    fi

    _vmsnap_prog=$(_vmsnap_dequote "${words[0]}")
    [[ $_vmsnap_prog == */* ]] || _vmsnap_prog=$(type -P "$_vmsnap_prog") || return 0

    if (( cword == 1 )); then
        while read -r name _; do _vmsnap_reply "$name"; done < <(_vmsnap_commands "$_vmsnap_prog")
        _vmsnap_reply help --help --version
        return 0
    fi
    cmd=${words[1]}
    if [[ $cmd == help ]]; then
        (( cword == 2 )) || return 0
        while read -r name _; do _vmsnap_reply "$name"; done < <(_vmsnap_commands "$_vmsnap_prog")
        return 0
    fi
    while read -r name line; do
        [[ $name == "$cmd" ]] && args=$line
    done < <(_vmsnap_commands "$_vmsnap_prog")
    [[ $args == DOMAIN\ NAME* ]] && n_cmd_args=2
    [[ $args == DOMAIN\ NAME* && $cmd != create ]] && snap_names=1
    [[ $args == DOMAIN* && $args != DOMAIN\ NAME* ]] && n_cmd_args=1

    mapfile -t opts < <(_vmsnap_options "$_vmsnap_prog" "$cmd")
    (( ${#opts[@]} )) || return 0
    for o in "${opts[@]}"; do
        [[ $o == *= ]] && takes[${o%=}]=1
    done

    # The words before the cursor: positionals, and the options that matter
    # to what we ask vmsnap and virsh.
    _vmsnap_uri=""
    for (( i = 2; i < cword; i++ )); do
        w=${words[i]}
        if [[ -n $expect ]]; then
            o=$expect expect=""
        elif (( endopts )) || [[ $w != -?* ]]; then
            pos+=("$(_vmsnap_dequote "$w")")
            continue
        elif [[ $w == -- ]]; then
            endopts=1
            continue
        elif [[ $w == --*=* ]]; then
            o=${w%%=*} w=${w#*=}
        elif [[ -n ${takes[$w]-} ]]; then
            expect=$w
            continue
        else
            continue
        fi
        w=$(_vmsnap_dequote "$w")
        case $o in
            -c|--connect) _vmsnap_uri=$w; pass+=(--connect "$w") ;;
            --state-dir|--config|-o|--option) pass+=("$o" "$w") ;;
        esac
    done
    _vmsnap_dom=${pos[0]-}

    if [[ -n $expect ]]; then
        _vmsnap_value "$expect" "" "$cur"
    elif (( ! endopts )) && [[ $cur == --*=* ]]; then
        _vmsnap_value "${cur%%=*}" "${cur%%=*}=" "${cur#*=}"
    elif (( ! endopts )) && [[ $cur == -* ]]; then
        for o in "${opts[@]}"; do _vmsnap_reply "${o%=}"; done
    elif (( ${#pos[@]} == 0 && n_cmd_args >= 1 )); then
        while IFS= read -r w; do
            [[ -n $w ]] && _vmsnap_reply "$w"
        done < <(_vmsnap_domains "$_vmsnap_uri")
        compopt -o filenames 2>/dev/null || :
        while IFS= read -r w; do _vmsnap_reply "$w"; done < <(compgen -d -- "$cur"; compgen -f -X '!*.xml' -- "$cur")
    elif (( ${#pos[@]} == 1 && snap_names )); then
        while IFS= read -r w; do
            [[ -n $w ]] && _vmsnap_reply "$w"
        done < <(_vmsnap_run "$_vmsnap_prog" list --names --no-wait "${pass[@]}" "$_vmsnap_dom")
    fi
    return 0
}
complete -F _vmsnap vmsnap
