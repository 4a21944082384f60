// Command go-hub is a chat application with its hub written in Go: run
// three of it (flags -id, -data, -http, -raft, -join) and they form one
// Backplane cluster, with no other bus. See docs/embedding.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"unicode/utf8"

	"github.com/backplane/backplane/hubs"
	"github.com/backplane/backplane/node"
)

// maxHistory is how many messages a room keeps.
const maxHistory = 50

// Message is one chat message.
type Message struct {
	User string `json:"user"`
	Text string `json:"text"`
}

// Chat is the chat hub. Its history lives in this process: each process
// keeps what was said through it (an application shares state as it
// likes; the messages themselves reach every client through the log).
type Chat struct {
	mu      sync.Mutex
	history map[string][]Message
}

// Join adds the caller to a room.
func (c *Chat) Join(ctx *hubs.Context, room string) error {
	if err := checkRoom(room); err != nil {
		return err
	}
	return ctx.Groups.Add(ctx, ctx.ConnectionID(), room)
}

// Leave removes the caller from a room.
func (c *Chat) Leave(ctx *hubs.Context, room string) error {
	return ctx.Groups.Remove(ctx, ctx.ConnectionID(), room)
}

// Send validates a message, keeps it in the room's history and sends it
// to the room as "message".
func (c *Chat) Send(ctx *hubs.Context, room, user, text string) error {
	if err := checkRoom(room); err != nil {
		return err
	}
	text = strings.TrimSpace(text)
	if text == "" || utf8.RuneCountInString(text) > 500 {
		return hubs.NewHubError("a message must have 1 to 500 characters")
	}
	m := Message{User: user, Text: text}
	c.mu.Lock()
	h := append(c.history[room], m)
	if len(h) > maxHistory {
		h = h[len(h)-maxHistory:]
	}
	c.history[room] = h
	c.mu.Unlock()
	return ctx.Clients.Group(room).Send(ctx, "message", room, m)
}

// History returns the room's last messages kept by this process.
func (c *Chat) History(room string) []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Message{}, c.history[room]...)
}

func checkRoom(room string) error {
	if room == "" || len(room) > 64 {
		return hubs.NewHubError("a room name must have 1 to 64 bytes")
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "go-hub:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg node.Config
	var join string
	flag.StringVar(&cfg.ID, "id", "", "node id (required)")
	flag.StringVar(&cfg.DataDir, "data", "", "data directory (required)")
	flag.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "HTTP listen address (clients and peers)")
	flag.StringVar(&cfg.RaftAddr, "raft", "127.0.0.1:9090", "Raft listen address")
	flag.StringVar(&join, "join", "", "HTTP address of a member to join (empty: bootstrap a new cluster)")
	flag.StringVar(&cfg.ClusterKey, "cluster-key", os.Getenv("BACKPLANE_CLUSTER_KEY"), "shared key of the cluster's members")
	flag.BoolVar(&cfg.InsecureCluster, "insecure-cluster", false, "run without a cluster key (loopback tests only)")
	flag.Parse()
	if cfg.ID == "" || cfg.DataDir == "" {
		return errors.New("-id and -data are required")
	}
	if join != "" {
		cfg.Join = []string{join}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := hubs.New(hubs.Config{Node: cfg})
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.Register("chat", &Chat{history: map[string][]Message{}}); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return srv.Run(ctx)
}
