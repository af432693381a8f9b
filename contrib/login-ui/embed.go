// Package loginui is the sample login page: plain HTML and JavaScript, no build step.
// `serve --dev` serves it at /ui/ on the public port.
package loginui

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/x"
)

//go:embed *.html *.js *.css
var files embed.FS

// Route is where the page is served.
const Route = "/ui/*filepath"

// CSP is the page's Content-Security-Policy: "default-src 'self'" plus data: images, so
// the TOTP QR code (a data: URI) can be shown. No inline scripts or styles.
const CSP = "default-src 'self'; img-src 'self' data:"

// started stands in for the modification time of the embedded files (embed.FS has none),
// so conditional requests work within one run of the server.
var started = time.Now()

// Register serves the page on the public router.
//
// The page is a single-page app: a path under /ui/ that names an embedded file (app.js,
// app.css, …) gets that file; any other path without a file extension (/ui/, /ui/login,
// /ui/consent — the defaults of urls.login_ui and urls.consent_ui) gets index.html, and the
// script decides what to show from the query (login_challenge, consent_challenge). A
// missing path with an extension (/ui/nope.js) is a 404, not HTML posing as a script.
func Register(r *x.PublicRouter) {
	index, err := files.ReadFile("index.html")
	if err != nil {
		panic("loginui: index.html is not embedded: " + err.Error())
	}
	fsrv := http.FileServer(http.FS(files))
	r.GET(Route, func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) {
		w.Header().Set("Content-Security-Policy", CSP)
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Del("Pragma")

		name := strings.TrimPrefix(path.Clean("/"+ps.ByName("filepath")), "/")
		if name != "" && name != "index.html" && fs.ValidPath(name) {
			if st, err := fs.Stat(files, name); err == nil && !st.IsDir() {
				req2 := req.Clone(req.Context())
				req2.URL.Path = "/" + name
				fsrv.ServeHTTP(w, req2)
				return
			}
		}
		if path.Ext(name) != "" && name != "index.html" {
			http.NotFound(w, req)
			return
		}
		// index.html is written directly: FileServer would redirect ".../index.html" to
		// "./", i.e. back to /ui/, and cannot serve it under another name.
		http.ServeContent(w, req, "index.html", started, bytes.NewReader(index))
	})
}
