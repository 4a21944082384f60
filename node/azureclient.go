package node

import (
	"net/http"

	"github.com/backplane/backplane/fsm"
)

// Azure SignalR Service serves every hub's clients at one URL,
// "<endpoint>/client/?hub=<hub>": its negotiate is
// "<endpoint>/client/negotiate?hub=<hub>" and every later request of the
// connection (WebSocket, SSE, long polling) goes to "/client/" with the hub
// in the query. Azure Functions' SignalRConnectionInfo binding, and the
// Management SDK's negotiate, hand clients that URL; azureClientPaths
// serves it as the hub's own route, /hubs/<hub>, so a serverless
// application's negotiate function works unchanged.

// azureClientPaths rewrites "/client/?hub=h" to "/hubs/h" and
// "/client/negotiate?hub=h" to "/hubs/h/negotiate", keeping the query.
func azureClientPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var suffix string
		switch r.URL.Path {
		case "/client", "/client/":
		case "/client/negotiate":
			suffix = "/negotiate"
		default:
			next.ServeHTTP(w, r)
			return
		}
		hub := r.URL.Query().Get("hub")
		if hub == "" {
			writeError(w, r, errNotFoundf("%s needs the hub in its query: %s?hub=<hub>", r.URL.Path, r.URL.Path))
			return
		}
		if err := fsm.ValidateHub(hub); err != nil {
			writeError(w, r, errNotFoundf("no hub %q: %v", hub, err))
			return
		}
		u := *r.URL // canonicalHubs, next, folds the hub's case
		u.Path, u.RawPath = "/hubs/"+hub+suffix, ""
		r2 := r.Clone(r.Context())
		r2.URL = &u
		next.ServeHTTP(w, r2)
	})
}
