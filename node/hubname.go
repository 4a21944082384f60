package node

import (
	"context"
	"net/http"
	"strings"

	"github.com/backplane/backplane/transport/signalr"
)

// Hub names are case-insensitive, as ASP.NET Core routes them: /hubs/Chat,
// /hubs/chat and /api/v1/hubs/CHAT name one hub. Its canonical form is
// lower case (ASCII letters only: a valid hub name holds nothing else), and
// canonicalHubs rewrites the hub segment of every route that names a hub
// before the routes see it. So every command that names a hub is proposed
// with the canonical name, and the state machine never has to fold case
// (its apply, and what it stores, do not change).

// hubRoutePrefixes are the route prefixes followed by a {hub} segment.
var hubRoutePrefixes = []string{"/hubs/", "/api/v1/hubs/", "/api/hubs/", "/v1/hubs/"}

// originalPathKey keeps the escaped path a client asked for, before its
// hub was folded: token audiences name the URL the client called.
type originalPathKey struct{}

// canonicalHubs folds the hub segment of the request's path to lower case.
func canonicalHubs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, changed := foldHubSegment(r.URL.Path)
		if !changed {
			next.ServeHTTP(w, r)
			return
		}
		orig := r.URL.EscapedPath()
		r2 := r.WithContext(context.WithValue(r.Context(), originalPathKey{}, orig))
		u := *r.URL
		u.Path = path
		if u.RawPath != "" {
			u.RawPath, _ = foldHubSegment(u.RawPath)
		}
		r2.URL = &u
		next.ServeHTTP(w, r2)
	})
}

// foldHubSegment lowers the segment after a hub route prefix.
func foldHubSegment(path string) (string, bool) {
	for _, p := range hubRoutePrefixes {
		if !strings.HasPrefix(path, p) {
			continue
		}
		rest := path[len(p):]
		seg := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg = rest[:i]
		}
		folded := signalr.CanonicalHub(seg)
		if folded == seg {
			return path, false
		}
		return p + folded + rest[len(seg):], true
	}
	return path, false
}

// clientEscapedPath is the escaped path the client asked for.
func clientEscapedPath(r *http.Request) string {
	if p, ok := r.Context().Value(originalPathKey{}).(string); ok {
		return p
	}
	return r.URL.EscapedPath()
}
