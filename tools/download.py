"""Fetch pretrained weights and print the local path of the verified file (its last line).

    python tools/download.py NAME_OR_URL [--sha256 HEX] [--quiet]

NAME_OR_URL: a zoo name (``python -c "import modzoo; print(modzoo.list_models())"``),
``modzoo://NAME``, ``timm:ARCH.TAG``, ``hf://ORG/REPO/FILE``, an ``http(s)://`` URL or a local
file. Downloads are cached under ``$MODZOO_HOME`` (default ``~/.cache/modzoo``; ``hf://`` and
``timm:`` files in the Hugging Face cache). The exit status is 1 on any failure, with the reason
on stderr.
"""
import argparse
import sys

from modzoo.hub import file_sha256, resolve


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('source', metavar='NAME_OR_URL')
    parser.add_argument('--sha256', help='expected sha256 (8 to 64 leading hex digits); default: '
                                         "the metafile's, or the file name's -<hex> suffix")
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        path = resolve(args.source, sha256=args.sha256, progress=not args.quiet)
    except (OSError, KeyError, ValueError) as error:  # hub errors: missing, HTTP, hash, name
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f'error: {message}', file=sys.stderr)
        return 1
    if not args.quiet:
        print(f'sha256 {file_sha256(path)}')
    print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
