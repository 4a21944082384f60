package access

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// OriginAllowed reports whether a request may be served to the browser
// origin it comes from: requests without an Origin header (non-browser
// clients, same-origin GETs), same-host origins, and configured origins
// ("*" allows any).
func OriginAllowed(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if u, err := url.Parse(origin); err == nil && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return slices.ContainsFunc(allowed, func(o string) bool {
		return o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin)
	})
}
