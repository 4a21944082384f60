package testkit

import (
	"bufio"
	"io"
	"net/http"
	"strings"
)

// Event is one Server-Sent Event, or a block of only comments and fields.
type Event struct {
	ID       string
	Event    string
	Data     string   // the data lines joined with "\n"
	Comments []string // the comment lines, without the ": "
	Retry    string
}

// SSEReader reads the events of a text/event-stream.
type SSEReader struct{ r *bufio.Reader }

// NewSSEReader reads events from r (usually a response body).
func NewSSEReader(r io.Reader) *SSEReader { return &SSEReader{r: bufio.NewReader(r)} }

// Next reads up to the next blank line that ends a non-empty block and
// returns the block; it returns the read error (io.EOF at the end) if the
// stream ends first.
func (s *SSEReader) Next() (Event, error) {
	var ev Event
	var data []string
	seen := false
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if !seen {
				continue
			}
			ev.Data = strings.Join(data, "\n")
			return ev, nil
		}
		seen = true
		if strings.HasPrefix(line, ":") {
			ev.Comments = append(ev.Comments, strings.TrimPrefix(strings.TrimPrefix(line, ":"), " "))
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID = value
		case "event":
			ev.Event = value
		case "data":
			data = append(data, value)
		case "retry":
			ev.Retry = value
		}
	}
}

// ReadSSE sends req, a request for a text/event-stream, with client and
// passes each event of a 200 answer to each until each returns false or
// the stream ends or fails. A request that fails, or that is answered with
// another status (a node not ready yet, say), passes no event; a reader
// that follows a cursor across nodes goes on with the next one.
func ReadSSE(client *http.Client, req *http.Request, each func(Event) bool) {
	resp, err := client.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	events := NewSSEReader(resp.Body)
	for {
		ev, err := events.Next()
		if err != nil || !each(ev) {
			return
		}
	}
}
