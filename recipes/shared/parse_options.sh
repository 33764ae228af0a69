# Sourced by a recipe's run.sh after it sets its defaults: `--some-name VALUE` sets the variable some_name,
# which must already exist (an unknown option is an error); whatever follows `--` is left in the array
# `overrides` (KEY=VALUE overrides of the YAML config).
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    --*)
      name=${1#--}; name=${name//-/_}
      if [ -z "${!name+set}" ]; then echo "$0: unknown option $1" >&2; exit 2; fi
      if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" >&2; exit 2; fi
      printf -v "$name" '%s' "$2"; shift 2 ;;
    *) echo "$0: unexpected argument $1 (options are --name VALUE; KEY=VALUE overrides go after --)" >&2; exit 2 ;;
  esac
done
overrides=("$@")
