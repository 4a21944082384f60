package node

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWriteIndexAsWriteJSON(t *testing.T) {
	for _, idx := range []uint64{0, 1, 18446744073709551615} {
		a, b := httptest.NewRecorder(), httptest.NewRecorder()
		writeIndex(a, idx)
		writeJSON(b, http.StatusAccepted, map[string]uint64{"index": idx})
		if a.Body.String() != b.Body.String() || a.Code != b.Code || a.Header().Get("Content-Type") != b.Header().Get("Content-Type") || a.Header().Get("Cache-Control") != b.Header().Get("Cache-Control") {
			t.Errorf("index %d: %d %q %v, want %d %q %v", idx, a.Code, a.Body, a.Header(), b.Code, b.Body, b.Header())
		}
	}
}
