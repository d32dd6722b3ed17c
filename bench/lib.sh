# Helpers for the bench scripts that sample process trees; sourced, not run.
# "tree" = a process and its children (a c1m parent and its worker processes).

tree() { echo "$1"; pgrep -P "$1" || true; }

# tree_sum PID rss|fds|cpu: VmRSS in KiB, open descriptors, or user + system ticks, summed
# over the tree.
tree_sum() {
  local s=0 p v
  for p in $(tree "$1"); do
    case $2 in
      rss) v=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0) ;;
      fds) v=$(ls "/proc/$p/fd" 2>/dev/null | wc -l) ;;
      cpu) v=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0) ;;
    esac
    s=$((s + ${v:-0}))
  done
  echo $s
}

# wait_for SECONDS CMD...: polls CMD until it succeeds; fails after SECONDS.
wait_for() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.1; done
}
