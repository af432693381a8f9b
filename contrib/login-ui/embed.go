// Package loginui is the sample login page: plain HTML and JavaScript, no build step.
// `serve --dev` serves it at /ui/ on the public port.
package loginui

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/x"
)

//go:embed *.html *.js *.css
var files embed.FS

// Route is where the page is served.
const Route = "/ui/*filepath"

// Register serves the page on the public router. Its CSP adds data: images to
// "default-src 'self'" so the TOTP QR code (a data: URI) can be shown.
func Register(r *x.PublicRouter) {
	sub, _ := fs.Sub(files, ".")
	fsrv := http.FileServer(http.FS(sub))
	r.GET(Route, func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Del("Pragma")
		// "/" is served as the directory (FileServer answers it with index.html): a path
		// ending in "/index.html" would be redirected to "./", i.e. back to /ui/, forever.
		p := ps.ByName("filepath")
		if p == "" {
			p = "/"
		}
		req2 := req.Clone(req.Context())
		req2.URL.Path = p
		fsrv.ServeHTTP(w, req2)
	})
}
