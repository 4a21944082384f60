// Package webui serves the browser pages every node ships: a chat page on
// the native cursor stream (GET / and GET /chat) and a cluster dashboard
// (GET /dashboard), with their scripts, styles and icon under /ui/.
//
// The pages are plain HTML, CSS and JavaScript embedded in the binary, with
// no third-party code. They only call the node that served them: the chat
// page reads GET /v1/info, the native SSE stream and the REST publish; the
// dashboard reads GET /admin/cluster. Switching the chat to another node
// navigates to that node's page, so no request is ever cross-origin.
package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"time"
)

//go:embed static
var static embed.FS

// AssetPrefix is the path under which the pages' scripts, styles and icon
// are served.
const AssetPrefix = "/ui/"

// pages maps each page's route pattern to its file in static/.
var pages = map[string]string{
	"GET /{$}":       "chat.html",
	"GET /chat":      "chat.html",
	"GET /dashboard": "dashboard.html",
}

// contentTypes are set explicitly rather than taken from the system's MIME
// table, which differs between machines.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// contentSecurityPolicy allows only the node's own scripts and styles.
// connect-src also allows other http(s) origins: the chat page checks that
// a node answers (a no-cors fetch) before it moves there.
const contentSecurityPolicy = "default-src 'self'; connect-src 'self' http: https:; img-src 'self' data:; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	name  string
	body  []byte
	ctype string
	etag  string
}

func (a *asset) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	// Revalidate every time, so a node upgrade shows at once; the ETag
	// keeps that to a 304.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	if path.Ext(a.name) == ".html" {
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("Referrer-Policy", "same-origin")
	}
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

func load(name string) (*asset, error) {
	body, err := static.ReadFile("static/" + name)
	if err != nil {
		return nil, err
	}
	ctype, ok := contentTypes[path.Ext(name)]
	if !ok {
		return nil, fmt.Errorf("webui: no content type for %s", name)
	}
	sum := sha256.Sum256(body)
	return &asset{name: name, body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}, nil
}

// Register adds the pages and their assets to mux: GET / (exactly), GET
// /chat, GET /dashboard and GET /ui/<file> for each embedded script, style
// and icon. Only these exact paths are registered, so every other path
// still reaches mux's own fallback.
func Register(mux *http.ServeMux) {
	for pattern, name := range pages {
		mux.Handle(pattern, mustLoad(name))
	}
	names, err := fs.Glob(static, "static/*")
	if err != nil {
		panic(err)
	}
	for _, p := range names {
		name := path.Base(p)
		if path.Ext(name) == ".html" {
			continue // served at the page routes only
		}
		mux.Handle("GET "+AssetPrefix+name, mustLoad(name))
	}
}

func mustLoad(name string) *asset {
	a, err := load(name)
	if err != nil {
		panic(err) // the embedded files are fixed at build time; the tests load them all
	}
	return a
}
