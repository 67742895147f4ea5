# Shared by the end-to-end GUI scripts (sourced, not run): a private Xvfb, starting and closing
# vaelab, its screenshot/state-dump hook (SIGUSR1 writes shot-NNN.txt with widget rectangles)
# and clicks on those rectangles with xdotool. Not a test by itself.
# A script sources it and calls init_e2e "$@" (arguments: VAELAB OUTPUT_DIR).

skip() { echo "SKIP: $*"; exit 77; }
fail() {
  echo "FAIL: $*"
  echo "---- app log ----"; cat "$out/app.log" 2>/dev/null | tail -30
  echo "screenshots: ${shot_dir:-$out}"
  exit 1
}

init_e2e() {  # init_e2e VAELAB OUTPUT_DIR: sets app, out, data; skips without the tools; empties out
  app=${1:?usage: $(basename "$0") VAELAB OUTPUT_DIR}
  out=${2:?usage: $(basename "$0") VAELAB OUTPUT_DIR}
  data=${VAELAB_E2E_DATA:-/usr/share/datasets/fashion-mnist}
  for tool in Xvfb xdotool; do command -v "$tool" >/dev/null || skip "$tool is not installed"; done
  [[ -d $data ]] || skip "no data folder at $data (package dataset-fashion-mnist, or set VAELAB_E2E_DATA)"
  [[ -x $app ]] || fail "no vaelab binary at $app"
  rm -rf "$out"
  mkdir -p "$out/shots"
}

xvfb_pid="" app_pid=""
cleanup() {
  [[ -n $app_pid ]] && kill "$app_pid" 2>/dev/null
  [[ -n $xvfb_pid ]] && kill "$xvfb_pid" 2>/dev/null
  wait 2>/dev/null
}

start_xvfb() {  # start_xvfb [WxH]: a private X server (screen 1280x800 unless given) on a free display (Xvfb picks the number, or VAELAB_E2E_DISPLAY=:N); private settings
  local screen=${1:-1280x800}
  trap cleanup EXIT
  rm -f "$out/display"
  if [[ -n ${VAELAB_E2E_DISPLAY:-} ]]; then
    Xvfb "$VAELAB_E2E_DISPLAY" -screen 0 "${screen}x24" -nolisten tcp 2>"$out/xvfb.log" &
    echo "${VAELAB_E2E_DISPLAY#:}" >"$out/display"
  else
    Xvfb -displayfd 3 -screen 0 "${screen}x24" -nolisten tcp 3>"$out/display" 2>"$out/xvfb.log" &
  fi
  xvfb_pid=$!
  for _ in $(seq 100); do [[ -s $out/display ]] && break; sleep 0.1; done
  [[ -s $out/display ]] || fail "Xvfb did not start"
  export DISPLAY=":$(head -n1 "$out/display")"
  mkdir -p "$out/config" "$out/data"
  export XDG_CONFIG_HOME="$out/config" XDG_DATA_HOME="$out/data"
  echo "Xvfb on $DISPLAY"
}

app_size=1280x800  # start_app's --size; empty: none (the remembered window size)
start_app() {  # start_app SHOT_DIR [options…]: sets app_pid, shot_dir, shots
  shot_dir=$1
  shift
  shots=0
  "$app" --data "$data" --train-limit 2000 ${app_size:+--size "$app_size"} --screenshot-dir "$shot_dir" "$@" >>"$out/app.log" 2>&1 &
  app_pid=$!
}
find_window() { wid=$(xdotool search --sync --name '^vaelab$' | head -n1); [[ -n $wid ]] || fail "no window named vaelab"; }
close_app() {  # Ctrl+Q, then expect exit code 0 within 20 s
  alive || fail "vaelab is not running before the close"
  xdotool windowfocus --sync "$wid" 2>/dev/null || true
  xdotool key --clearmodifiers ctrl+q
  for _ in $(seq 200); do alive || break; sleep 0.1; done
  if alive; then
    kill "$app_pid"
    fail "vaelab did not exit within 20 s of Ctrl+Q"
  fi
  wait "$app_pid"
  local rc=$?
  app_pid=""
  ((rc == 0)) || fail "vaelab exited with code $rc"
}

alive() { kill -0 "$app_pid" 2>/dev/null; }
wait_for() {  # wait_for FILE SECONDS
  local i
  for ((i = 0; i < $2 * 10; ++i)); do
    [[ -e $1 ]] && return 0
    alive || fail "vaelab died (waiting for $(basename "$1"))"
    sleep 0.1
  done
  fail "timed out after $2 s waiting for $(basename "$1")"
}
shot() {  # ask the app for a screenshot (SIGUSR1) and wait for it; sets $info to its .txt file
  shots=$((shots + 1))
  info=$(printf '%s/shot-%03d.txt' "$shot_dir" "$shots")
  kill -USR1 "$app_pid"
  wait_for "$info" 20
}
shoot_until() {  # shoot_until TRIES PAUSE COMMAND…: a screenshot every PAUSE s until COMMAND succeeds
  local i
  for ((i = 0; i < $1; ++i)); do
    sleep "$2"
    shot
    "${@:3}" && return 0
  done
  return 1
}
has_rect() { [[ -n $(rect "$1") ]]; }
field() { awk -v k="$1" '$1 == k { print $2 }' "$info"; }
line() { awk -v k="$1" '$1 == k { sub(/^[^ ]+ /, ""); print }' "$info"; }  # the whole value
rect() { awk -v k="$1" '$1 == "rect" && $2 == k { print $3, $4, $5, $6 }' "$info"; }
press() {  # press KEY…: each key held for 0.15 s. Dear ImGui 1.86 samples keys once a frame, so a
  # press and release inside one frame (xdotool key's default) is lost when the app draws slowly.
  local key
  for key in "$@"; do
    xdotool keydown --clearmodifiers "$key"
    sleep 0.15
    xdotool keyup "$key"
    sleep 0.05
  done
}
click() {  # click NAME: press and release the left button in the middle of the widget's rectangle
  local x0 y0 x1 y1
  read -r x0 y0 x1 y1 <<<"$(rect "$1")"
  [[ -n ${y1:-} ]] || fail "no rectangle for $1 in $info"
  xdotool mousemove --window "$wid" $(((${x0%.*} + ${x1%.*}) / 2)) $(((${y0%.*} + ${y1%.*}) / 2))
  sleep 0.2
  xdotool mousedown 1
  sleep 0.2
  xdotool mouseup 1
}
