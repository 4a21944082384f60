package webui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"
)

// newServer serves Register's routes with a fallback that answers 418, so
// the tests can tell what Register left to the fallback.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	Register(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, method, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestPagesAndAssetsHaveTheirContentTypes(t *testing.T) {
	ts := newServer(t)
	for _, c := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", "<title>Backplane chat</title>"},
		{"/chat", "text/html; charset=utf-8", "<title>Backplane chat</title>"},
		{"/dashboard", "text/html; charset=utf-8", "<title>Backplane cluster</title>"},
		{"/ui/chat.js", "text/javascript; charset=utf-8", "EventSource"},
		{"/ui/dashboard.js", "text/javascript; charset=utf-8", "/admin/cluster"},
		{"/ui/style.css", "text/css; charset=utf-8", ".log"},
		{"/ui/icon.svg", "image/svg+xml", "<svg"},
	} {
		resp, body := get(t, http.MethodGet, ts.URL+c.path, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d", c.path, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != c.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.ctype)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", c.path, got)
		}
		if !strings.Contains(body, c.contains) {
			t.Errorf("GET %s: body lacks %q", c.path, c.contains)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if strings.HasSuffix(c.ctype, "html; charset=utf-8") != (csp != "") {
			t.Errorf("GET %s: Content-Security-Policy %q (wanted on HTML pages only)", c.path, csp)
		}
	}
}

func TestEveryEmbeddedFileIsServed(t *testing.T) {
	ts := newServer(t)
	names, err := fs.Glob(static, "static/*")
	if err != nil || len(names) == 0 {
		t.Fatalf("embedded files: %v %v", names, err)
	}
	for _, p := range names {
		name := path.Base(p)
		if path.Ext(name) == ".html" {
			continue
		}
		if resp, _ := get(t, http.MethodGet, ts.URL+AssetPrefix+name, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s%s: status %d", AssetPrefix, name, resp.StatusCode)
		}
	}
}

// The pages' links must all resolve: a page names only assets that exist.
func TestPagesReferenceOnlyServedAssets(t *testing.T) {
	ts := newServer(t)
	for _, page := range []string{"/", "/dashboard"} {
		_, body := get(t, http.MethodGet, ts.URL+page, nil)
		for _, part := range strings.Split(body, `"`+AssetPrefix)[1:] {
			ref := AssetPrefix + part[:strings.IndexByte(part, '"')]
			if resp, _ := get(t, http.MethodGet, ts.URL+ref, nil); resp.StatusCode != http.StatusOK {
				t.Errorf("%s references %s: status %d", page, ref, resp.StatusCode)
			}
		}
	}
}

func TestOtherPathsAndMethodsReachTheFallback(t *testing.T) {
	ts := newServer(t)
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/nope"},
		{http.MethodGet, "/chat/x"},
		{http.MethodGet, "/ui/"},
		{http.MethodGet, "/ui/missing.js"},
		{http.MethodGet, "/ui/chat.html"},
		{http.MethodPost, "/"},
		{http.MethodPost, "/chat"},
	} {
		if resp, _ := get(t, c.method, ts.URL+c.path, nil); resp.StatusCode != http.StatusTeapot {
			t.Errorf("%s %s: status %d, want the fallback's 418", c.method, c.path, resp.StatusCode)
		}
	}
}

func TestETagRevalidationAndHead(t *testing.T) {
	ts := newServer(t)
	resp, _ := get(t, http.MethodGet, ts.URL+"/ui/chat.js", nil)
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q", etag, resp.Header.Get("Cache-Control"))
	}
	if resp, _ := get(t, http.MethodGet, ts.URL+"/ui/chat.js", map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidation: status %d, want 304", resp.StatusCode)
	}
	resp, body := get(t, http.MethodHead, ts.URL+"/", nil)
	if resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("HEAD /: status %d, Content-Type %q, body %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}
