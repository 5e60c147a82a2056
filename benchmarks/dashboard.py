"""`make dashboard`: asv's published pages made to work with no internet
access.  asv's index.html loads jQuery, flot and four small plugins and
Bootstrap from CDNs; this serves local copies instead, taken from Debian's
packages (one of the two registries these machines reach: PyPI has no flot),
and slubcy's own stand-in for the one plugin no registry carries
(benchmarks/www/jquery.flot.orderBars.js).

    python benchmarks/dashboard.py HTML_DIR [--cache DIR]

Every <script src> and stylesheet <link href> of every page in HTML_DIR
that points off the machine is rewritten to vendor/NAME (integrity and
crossorigin attributes dropped: the files are Debian's builds, not the
CDN's bytes), and the files are copied to HTML_DIR/vendor.  A remote script
or stylesheet with no local copy is an error (exit 2), as is a file that
cannot be had.  Packages already installed are read from /usr/share;
others are fetched once with `apt-get download` into the cache
(.asv/vendor by default) and unpacked with dpkg-deb.
"""
import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (the end of the CDN path asv loads, Debian package, file in it, local name)
VENDOR = (
    ("jquery-3.3.1.min.js", "libjs-jquery", "usr/share/javascript/jquery/jquery.min.js",
     "jquery.min.js"),
    ("flot/0.8.3/jquery.flot.min.js", "libghc-js-flot-data",
     "usr/share/haskell-js-flot/jquery.flot.min.js", "jquery.flot.min.js"),
    ("flot/0.8.3/jquery.flot.time.min.js", "libghc-js-flot-data",
     "usr/share/haskell-js-flot/jquery.flot.time.min.js", "jquery.flot.time.min.js"),
    ("flot/0.8.3/jquery.flot.selection.min.js", "libghc-js-flot-data",
     "usr/share/haskell-js-flot/jquery.flot.selection.min.js", "jquery.flot.selection.min.js"),
    ("flot/0.8.3/jquery.flot.categories.min.js", "libghc-js-flot-data",
     "usr/share/haskell-js-flot/jquery.flot.categories.min.js", "jquery.flot.categories.min.js"),
    ("jquery.flot.orderBars.js", None, "jquery.flot.orderBars.js", "jquery.flot.orderBars.js"),
    ("stupidtable.min.js", "libjs-jquery-stupidtable",
     "usr/share/javascript/jquery-stupidtable/stupidtable.min.js", "stupidtable.min.js"),
    ("md5.min.js", "node-blueimp-md5", "usr/share/javascript/blueimp-md5/md5.min.js", "md5.min.js"),
    ("bootstrap.min.js", "libjs-bootstrap", "usr/share/javascript/bootstrap/js/bootstrap.min.js",
     "bootstrap.min.js"),
    ("bootstrap.min.css", "libjs-bootstrap", "usr/share/javascript/bootstrap/css/bootstrap.min.css",
     "bootstrap.min.css"),
)

# a <script ... src="..."> or <link ... href="..."> tag, whole
TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
ATTR = re.compile(r'\s(src|href|integrity|crossorigin|referrerpolicy|rel)\s*=\s*"([^"]*)"',
                  re.IGNORECASE)
REMOTE = re.compile(r"^(https?:)?//", re.IGNORECASE)


class DashboardError(Exception):
    pass


def loaded_resources(html):
    """(tag, url) of every script and stylesheet the page loads."""
    out = []
    for m in TAG.finditer(html):
        attrs = {k.lower(): v for k, v in ATTR.findall(m.group(0))}
        tag = m.group(1).lower()
        if tag == "script" and "src" in attrs:
            out.append((tag, attrs["src"]))
        elif tag == "link" and attrs.get("rel", "").lower() == "stylesheet" and "href" in attrs:
            out.append((tag, attrs["href"]))
    return out


def remote_resources(html_dir):
    """{page: [url, ...]} of scripts and stylesheets loaded from off the machine."""
    found = {}
    for page in sorted(Path(html_dir).rglob("*.html")):
        urls = [url for _, url in loaded_resources(page.read_text(errors="replace"))
                if REMOTE.match(url)]
        if urls:
            found[str(page)] = urls
    return found


def _entry(url):
    for entry in VENDOR:
        if url.split("?")[0].endswith(entry[0]):
            return entry
    return None


def _fetch(package, path, cache):
    """The file `path` of Debian package `package`: installed, or from the
    unpacked package in `cache` (downloaded first if missing)."""
    if package is None:
        return HERE / "www" / path
    installed = Path("/") / path
    if installed.is_file():
        return installed
    unpacked = cache / package / path
    if unpacked.is_file():
        return unpacked
    cache.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):
        debs = sorted(cache.glob(f"{package}_*.deb"))
        if debs:
            break
        if shutil.which("apt-get") is None:
            raise DashboardError(f"{package}: not installed and no apt-get to download it")
        r = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True,
                           text=True)
        if r.returncode != 0 and attempt == 0:
            # an empty or old package list: refresh it once (needs root)
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        elif r.returncode != 0:
            raise DashboardError(f"apt-get download {package} failed: {r.stderr.strip()}")
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        raise DashboardError(f"{package}: no .deb in {cache} after apt-get download")
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(cache / package)], check=True)
    if not unpacked.is_file():
        raise DashboardError(f"{package} has no {path}")
    return unpacked


def localize(html_dir, cache):
    """Rewrite every page's remote scripts and stylesheets to vendor/ copies;
    returns the local names served."""
    html_dir, cache = Path(html_dir), Path(cache)
    pages = sorted(html_dir.rglob("*.html"))
    if not pages:
        raise DashboardError(f"no pages in {html_dir}: run asv publish first")
    unknown = sorted({url for urls in remote_resources(html_dir).values() for url in urls
                      if _entry(url) is None})
    if unknown:
        raise DashboardError("no local copy for: " + ", ".join(unknown))
    vendor = html_dir / "vendor"
    vendor.mkdir(exist_ok=True)
    served = set()

    def rewrite(m):
        tag = m.group(0)
        attrs = {k.lower(): v for k, v in ATTR.findall(tag)}
        url = attrs.get("src") or attrs.get("href") or ""
        if not REMOTE.match(url):
            return tag
        _, package, path, name = _entry(url)
        if name not in served:
            shutil.copyfile(_fetch(package, path, cache), vendor / name)
            served.add(name)
        tag = re.sub(r'\s(integrity|crossorigin|referrerpolicy)\s*=\s*"[^"]*"', "", tag,
                     flags=re.IGNORECASE)
        return tag.replace(f'"{url}"', f'"vendor/{name}"')

    for page in pages:
        text = page.read_text(errors="replace")
        rel = page.parent.relative_to(html_dir)
        new = TAG.sub(rewrite, text)
        if rel != Path("."):       # a page in a subfolder reaches vendor/ from there
            up = "../" * len(rel.parts)
            new = new.replace('"vendor/', f'"{up}vendor/')
        if new != text:
            page.write_text(new)
    left = remote_resources(html_dir)
    if left:
        raise DashboardError(f"still remote after rewriting: {left}")
    return sorted(served)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html_dir", help="asv's published html directory (asv publish)")
    ap.add_argument("--cache", default=".asv/vendor", help="where Debian packages are unpacked")
    args = ap.parse_args(argv)
    try:
        served = localize(args.html_dir, args.cache)
    except (DashboardError, OSError, subprocess.CalledProcessError) as e:
        print(f"dashboard: {e}", file=sys.stderr)
        return 2
    print(f"dashboard: {len(served)} scripts and stylesheets served from "
          f"{Path(args.html_dir) / 'vendor'}; no page loads anything from the network")
    return 0


if __name__ == "__main__":
    sys.exit(main())
