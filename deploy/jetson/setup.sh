#!/usr/bin/env bash
# Set up an NVIDIA Jetson to run detdistill's runtime and live demo (no torch, no ultralytics).
#
# Detects JetPack/L4T from /etc/nv_tegra_release and installs:
#   * system packages: TensorRT Python bindings, OpenCV built with GStreamer, GStreamer plugins,
#     python3-venv, v4l-utils
#   * a venv made with --system-site-packages (so it sees the system tensorrt and cv2)
#   * detdistill's base package (no torch), onnx (`detdistill build` reads the model with it), numpy<2
#     (the system cv2/tensorrt need NumPy 1.x ABI), and a CUDA binding: cuda-python (or --cuda-binding pycuda)
#
# Usage:  deploy/jetson/setup.sh [options]
#   --venv DIR          venv location (default: /opt/detdistill/venv, or $DETDISTILL_VENV)
#   --src PATH|SPEC     what to pip install (default: this repository's root)
#   --cuda-binding B    auto | pycuda | cuda-python (default: auto, cuda-python for the JetPack line)
#   --l4t VERSION       skip detection, e.g. --l4t 36.4.3 (containers without the release file)
#   --release-file F    read F instead of /etc/nv_tegra_release
#   --no-apt            skip apt-get (packages already installed)
#   --no-verify         skip the import checks at the end (e.g. during `docker build`)
#   --dry-run           print the commands instead of running them
#
# Sourcing this file (`source setup.sh`) only defines its functions; tests use that.

set -euo pipefail

RELEASE_FILE_DEFAULT=/etc/nv_tegra_release

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# parse_l4t_release FILE -> "35.4.1"
# The file's first line reads: "# R35 (release), REVISION: 4.1, GCID: ..., BOARD: ..., EABI: aarch64, DATE: ..."
parse_l4t_release() {
    local file="$1" line major revision
    [[ -r "$file" ]] || { log "$file not found: is this a Jetson? (use --l4t VERSION to force)"; return 1; }
    line="$(head -n 1 "$file")"
    if [[ "$line" =~ ^#[[:space:]]*R([0-9]+)[[:space:]]*\(release\),[[:space:]]*REVISION:[[:space:]]*([0-9]+(\.[0-9]+)*) ]]; then
        major="${BASH_REMATCH[1]}"
        revision="${BASH_REMATCH[2]}"
        [[ "$revision" == *.* ]] || revision="${revision}.0"
        printf '%s.%s\n' "$major" "$revision"
        return 0
    fi
    log "cannot parse L4T version from $file: '$line'"
    return 1
}

# jetpack_for_l4t "35.4.1" -> "5.1.2" (the JetPack release that ships this L4T)
jetpack_for_l4t() {
    case "$1" in
        32.7.*) echo "4.6" ;;
        35.1.*) echo "5.0.2" ;;
        35.2.*) echo "5.1" ;;
        35.3.*) echo "5.1.1" ;;
        35.4.*) echo "5.1.2" ;;
        35.5.*) echo "5.1.3" ;;
        35.6.0) echo "5.1.4" ;;
        35.6.1) echo "5.1.5" ;;
        35.*) echo "5.x" ;;
        36.2.*) echo "6.0-DP" ;;
        36.3.*) echo "6.0" ;;
        36.4.0) echo "6.1" ;;
        36.4.3) echo "6.2" ;;
        36.4.4) echo "6.2.1" ;;
        36.*) echo "6.x" ;;
        38.2.*) echo "7.0" ;;
        38.*) echo "7.x" ;;
        *) echo "unknown" ;;
    esac
}

# jetpack_line "36.4.3" -> jp5 | jp6 | jp7 | unsupported
jetpack_line() {
    case "${1%%.*}" in
        35) echo jp5 ;;
        36) echo jp6 ;;
        38) echo jp7 ;;
        *) echo unsupported ;;
    esac
}

# line_summary jp6 -> what that JetPack line ships (for the log and the README)
line_summary() {
    case "$1" in
        jp6) echo "TensorRT 10.3, CUDA 12.6, Python 3.10" ;;
        jp7) echo "TensorRT 10.13+, CUDA 13, Python 3.12" ;;
        *) echo "not supported" ;;
    esac
}

# apt_packages LINE -> the system packages the runtime and demo need
apt_packages() {
    local common="python3-venv python3-pip python3-dev python3-libnvinfer
        gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
        gstreamer1.0-plugins-bad gstreamer1.0-libav v4l-utils"
    case "$1" in
        # JetPack's OpenCV (nvidia-opencv) is built with GStreamer
        jp6) echo $common nvidia-opencv ;;
        jp7) echo $common python3-opencv ;;
        *) return 1 ;;
    esac
}

# cuda_binding_spec LINE [auto|pycuda|cuda-python] -> a pip requirement
cuda_binding_spec() {
    local line="$1" choice="${2:-auto}"
    if [[ "$choice" == auto ]]; then
        choice=cuda-python
    fi
    case "$choice:$line" in
        pycuda:*) echo "pycuda" ;;
        cuda-python:jp6) echo "cuda-python>=12.6,<13" ;;
        cuda-python:jp7) echo "cuda-python>=13,<14" ;;
        *) return 1 ;;
    esac
}

DRY_RUN=0
run() {
    if [[ "$DRY_RUN" == 1 ]]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

verify_install() {
    local py="$1"
    if [[ "$DRY_RUN" == 1 ]]; then
        printf '+ verify: import tensorrt, cv2 (with GStreamer), the CUDA binding, onnx; detdistill demo --help, build --help\n'
        return 0
    fi
    "$py" - <<'PY'
import re
import cv2
import tensorrt
info = cv2.getBuildInformation()
gst = re.search(r"GStreamer:\s*(\S+)", info)
print(f"tensorrt {tensorrt.__version__}, opencv {cv2.__version__} from {cv2.__file__}")
if not gst or gst.group(1) == "NO":
    raise SystemExit("this OpenCV has no GStreamer: pip's opencv-python shadows the system one "
                     "(pip uninstall opencv-python opencv-python-headless)")
try:
    import pycuda.driver  # noqa: F401
    print("CUDA binding: pycuda")
except ImportError:
    try:
        from cuda.bindings import runtime  # noqa: F401
    except ImportError:
        from cuda import cudart  # noqa: F401
    print("CUDA binding: cuda-python")
PY
    "$(dirname "$py")/detdistill" demo --help >/dev/null
    "$(dirname "$py")/detdistill" build --help >/dev/null
    "$py" -c "import onnx" \
        || { echo "onnx is missing: $py -m pip install onnx (detdistill build reads the ONNX with it)" >&2; return 1; }
}

main() {
    local here venv src binding l4t="" release_file="$RELEASE_FILE_DEFAULT" do_apt=1 do_verify=1
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    venv="${DETDISTILL_VENV:-/opt/detdistill/venv}"
    src="$(cd "$here/../.." && pwd)"
    binding=auto
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --venv) venv="$2"; shift 2 ;;
            --src) src="$2"; shift 2 ;;
            --cuda-binding) binding="$2"; shift 2 ;;
            --l4t) l4t="$2"; shift 2 ;;
            --release-file) release_file="$2"; shift 2 ;;
            --no-apt) do_apt=0; shift ;;
            --no-verify) do_verify=0; shift ;;
            --dry-run) DRY_RUN=1; shift ;;
            -h | --help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; return 0 ;;
            *) die "unknown option $1 (see --help)" ;;
        esac
    done

    [[ -n "$l4t" ]] || l4t="$(parse_l4t_release "$release_file")" || die "cannot tell the L4T version"
    local line jp
    line="$(jetpack_line "$l4t")"
    jp="$(jetpack_for_l4t "$l4t")"
    log "L4T $l4t -> JetPack $jp ($line: $(line_summary "$line"))"
    if [[ "$line" == unsupported ]]; then
        die "L4T $l4t (JetPack $jp) is not supported: it ships Python 3.6 and TensorRT 8.2. Flash JetPack 6.x (Orin) or 7.x (Thor)."
    fi
    if [[ "$line" == jp5 ]]; then
        die "L4T $l4t (JetPack $jp) is not supported: its TensorRT Python bindings exist only for Python 3.8, and detdistill needs Python 3.10 or newer. Flash JetPack 6.x (Orin) or 7.x (Thor)."
    fi
    [[ "$line" != jp7 ]] || log "JetPack 7 support is untested: check the package names below against your release"

    local pip_binding
    pip_binding="$(cuda_binding_spec "$line" "$binding")" || die "--cuda-binding must be auto, pycuda or cuda-python"

    local sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    if [[ "$do_apt" == 1 ]]; then
        # shellcheck disable=SC2046
        run $sudo apt-get update
        # shellcheck disable=SC2046
        run $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(apt_packages "$line")
    fi

    if [[ ! -x "$venv/bin/python" || "$DRY_RUN" == 1 ]]; then
        run $sudo mkdir -p "$(dirname "$venv")"
        [[ -z "$sudo" ]] || run $sudo chown "$(id -u):$(id -g)" "$(dirname "$venv")"
        run python3 -m venv --system-site-packages "$venv"
    fi
    local pip="$venv/bin/pip"
    run "$pip" install --upgrade pip
    # base package only: the [runtime] extra would pull pip's opencv-python, which has no GStreamer;
    # onnx: `detdistill build` reads the ONNX (its Q/DQ pairs, its head) before TensorRT parses it
    run "$pip" install "numpy<2" "$src" onnx faster-coco-eval
    if [[ "$pip_binding" == pycuda ]]; then
        # pycuda compiles against the CUDA toolkit: nvcc and headers under /usr/local/cuda
        PATH="/usr/local/cuda/bin:$PATH" CUDA_ROOT=/usr/local/cuda run "$pip" install "$pip_binding"
    else
        run "$pip" install "$pip_binding"
    fi
    # a pip OpenCV in the venv would shadow JetPack's GStreamer-enabled one
    run "$pip" uninstall -y opencv-python opencv-python-headless opencv-contrib-python

    if [[ "$do_verify" == 1 ]]; then
        verify_install "$venv/bin/python"
    fi
    log "done. Next: copy your ONNX here, build the engine on this device and run the demo:"
    log "  $venv/bin/detdistill build --help"
    log "  $venv/bin/detdistill demo --model student.engine --source csi://0   (or /dev/video0)"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
