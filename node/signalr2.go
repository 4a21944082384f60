package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/peer"
	"github.com/backplane/backplane/transport/signalr"
	"github.com/backplane/backplane/transport/signalr2"
	"github.com/backplane/backplane/transport/stream"
)

// The ASP.NET SignalR 2 endpoint (/signalr, package transport/signalr2)
// and its adapter: the one place that turns its requests into log
// commands (conn-open, group-add, conn-close, publish).

// signalr2TouchPath is the node-to-node route on which a node tells a
// connection's holder that it served the connection's long polls.
const signalr2TouchPath = "/internal/v1/signalr2/touch"

// signalr2Routes registers the SignalR 2 endpoint and starts its
// background work, which ends with the node's base context.
func (n *Node) signalr2Routes(mux *http.ServeMux) {
	srv, err := signalr2.NewServer(hub2Cluster{n}, signalr2.Options{
		Logger:                 n.cfg.Logger.With("component", "signalr2"),
		Secrets:                n.signalr2Secrets(),
		Authenticate:           n.authenticateSignalR2,
		AuthHeaders:            []string{"Authorization"}, // all authenticateSignalR2 reads, with the query
		AllowedOrigins:         n.cfg.AllowedOrigins,
		RelayPolicy:            n.cfg.RelayPolicy,
		RelayDisabled:          n.cfg.RelayDisabledHubs,
		MaxGroupsPerConnection: n.cfg.MaxGroupsPerConnection,
		MaxMessageSize:         n.cfg.MaxMessageSize,
		ConnLimit:              n.streams.ConnLimit(),
		ProposeTimeout:         DefaultSignalRProposeTimeout,
		Draining:               stream.ErrDraining,
		Application:            n.cfg.Application,
		InvocationRate:         n.cfg.InvocationRate,
		InvocationBurst:        n.cfg.InvocationBurst,
	})
	if err != nil { // only without secrets, which signalr2Secrets always gives
		n.log.Error("SignalR 2 endpoint disabled", "err", err)
		return
	}
	n.signalr2 = srv
	srv.Start()
	context.AfterFunc(n.baseCtx, srv.Stop)
	mux.Handle("/signalr/", srv)
	mux.HandleFunc("POST "+signalr2TouchPath, n.requirePeer(srv.ServeTouch))
}

// signalr2Secrets picks the secret that signs SignalR 2 connection and
// groups tokens: one every member shares, so each verifies the others'
// tokens. The cluster key (all of its keys during a rotation), else the
// admin token, else the client access key. A cluster with none of them
// trusts its loopback callers anyway: its tokens are signed with a fixed
// key, which guards against mistakes, not forgery.
func (n *Node) signalr2Secrets() [][]byte {
	var secrets [][]byte
	switch {
	case n.cfg.ClusterKey != "":
		for _, k := range strings.Split(n.cfg.ClusterKey, ",") {
			secrets = append(secrets, []byte(k))
		}
	case n.cfg.AdminToken != "":
		secrets = [][]byte{[]byte(n.cfg.AdminToken)}
	case n.cfg.AccessKey != "":
		secrets = [][]byte{[]byte(n.cfg.AccessKey)}
	default:
		n.log.Warn("no -cluster-key, -admin-token or -access-key: SignalR 2 connection and groups tokens are signed with a fixed key and can be forged")
		secrets = [][]byte{[]byte("backplane signalr2 unkeyed cluster")}
	}
	return secrets
}

// authenticateSignalR2 identifies a SignalR 2 client, as the other client
// endpoints do: without client tokens configured every client is
// anonymous; otherwise it needs a valid token (Authorization: Bearer or
// access_token=) good for each of the hubs, its user id is the first of
// the user claims present, and its permissions come from its role claim.
func (n *Node) authenticateSignalR2(r *http.Request, hubs []string) (signalr2.Identity, error) {
	if !n.clientKeys.enabled() {
		return signalr2.Identity{}, nil
	}
	tok, ok := bearerToken(r)
	if !ok {
		tok = r.URL.Query().Get("access_token")
	}
	if tok == "" {
		return signalr2.Identity{}, fmt.Errorf("%w: access token required (Authorization: Bearer or access_token=)", signalr2.ErrUnauthorized)
	}
	claims, err := n.clientKeys.parse(tok)
	if err != nil {
		return signalr2.Identity{}, signalr2Error(err)
	}
	if len(hubs) == 0 {
		// No hub yet (each send is checked for its own): audience and
		// issuer only.
		if err := n.checkClientClaims(claims, ""); err != nil && !errors.Is(err, errForbidden) {
			return signalr2.Identity{}, signalr2Error(err)
		}
	}
	for _, hub := range hubs {
		if err := n.checkClientClaims(claims, hub); err != nil {
			return signalr2.Identity{}, signalr2Error(err)
		}
	}
	grant, err := clientAccess(claims)
	if err != nil {
		return signalr2.Identity{}, signalr2Error(err)
	}
	id := signalr2.Identity{UserID: n.userIDOf(claims), Expires: grant.Expires, Permissions: grant.Permissions, Claims: tokenClaims(claims, "")}
	if id.UserID != "" {
		if err := fsm.ValidateName("user", id.UserID); err != nil {
			return signalr2.Identity{}, fmt.Errorf("%w: %v", signalr2.ErrUnauthorized, err)
		}
	}
	return id, nil
}

// signalr2Error maps the node's authentication errors to the endpoint's.
func signalr2Error(err error) error {
	switch {
	case errors.Is(err, errForbidden):
		return fmt.Errorf("%w: %w", signalr2.ErrForbidden, err)
	case errors.Is(err, errUnauthorized):
		return fmt.Errorf("%w: %w", signalr2.ErrUnauthorized, err)
	}
	return err
}

// hub2Cluster adapts the node to what the SignalR 2 endpoint needs.
type hub2Cluster struct{ n *Node }

var _ signalr2.Cluster = hub2Cluster{}

func (h hub2Cluster) NodeID() string { return h.n.cfg.ID }

func (h hub2Cluster) Read(f *fsm.Filter, after uint64, limit int) (fsm.Page, error) {
	return h.n.fsm.Read(f, after, limit)
}

func (h hub2Cluster) Changes(watches ...fsm.Watch) (<-chan struct{}, func()) {
	return h.n.fsm.Changes(watches...)
}
func (h hub2Cluster) AfterChange(watches []fsm.Watch, fn func()) func() bool {
	return h.n.fsm.AfterChange(watches, fn)
}
func (h hub2Cluster) LastMessage() uint64 { return h.n.fsm.LastMessage() }
func (h hub2Cluster) NotReady() string    { return h.n.notReady() }

func (h hub2Cluster) Groups(hub, connID, userID string) ([]string, error) {
	groups, err := h.n.fsm.GroupsOf(hub, fsm.MemberConnection, connID)
	if err != nil || userID == "" {
		return groups, err
	}
	userGroups, err := h.n.fsm.GroupsOf(hub, fsm.MemberUser, userID)
	return append(groups, userGroups...), err
}

func (h hub2Cluster) Holder(hub, connID string) (string, bool, error) {
	info, ok, err := h.n.fsm.Connection(hub, connID)
	return info.NodeID, ok, err
}

func (h hub2Cluster) Open(ctx context.Context, o signalr2.Opening) error {
	var cmds []fsm.Command
	for _, hub := range o.Hubs {
		cmds = append(cmds, fsm.EncodeConnection(fsm.CmdConnOpen, &fsm.Connection{Hub: hub, ConnID: o.ConnID, UserID: o.UserID, NodeID: h.n.cfg.ID}))
		for _, g := range o.Rejoin[hub] {
			cmds = append(cmds, fsm.EncodeMembership(&fsm.Membership{Hub: hub, Group: g, Kind: fsm.MemberConnection, Member: o.ConnID}, true))
		}
	}
	return h.propose(ctx, cmds)
}

func (h hub2Cluster) Close(ctx context.Context, connID string, hubs []string, holderOnly bool, reason string) error {
	node := ""
	if holderOnly {
		node = h.n.cfg.ID
	}
	cmds := make([]fsm.Command, 0, len(hubs))
	for _, hub := range hubs {
		cmds = append(cmds, fsm.EncodeConnection(fsm.CmdConnClose, &fsm.Connection{Hub: hub, ConnID: connID, NodeID: node, Reason: reason}))
	}
	return h.propose(ctx, cmds)
}

// propose commits cmds in one proposal; the first rejection is the error.
func (h hub2Cluster) propose(ctx context.Context, cmds []fsm.Command) error {
	if len(cmds) == 0 {
		return nil
	}
	results, err := h.n.proposer.Propose(ctx, cmds)
	if err != nil {
		return relay2Error(err)
	}
	for _, res := range results {
		if res.Err != nil {
			return relay2Error(res.Err)
		}
	}
	return nil
}

func (h hub2Cluster) CheckRelay(hub, connID string, r signalr2.Relay) error {
	cmd, err := relay2Command(hub, connID, r)
	if err != nil {
		return err
	}
	return fsm.ValidateCommand(cmd)
}

func (h hub2Cluster) Relay(ctx context.Context, hub, connID string, r signalr2.Relay) (uint64, error) {
	cmd, err := relay2Command(hub, connID, r)
	if err != nil {
		return 0, relay2Error(err)
	}
	res, err := h.n.proposer.ProposeOne(ctx, cmd)
	if err != nil {
		return 0, relay2Error(err)
	}
	return res.Index, nil
}

// relay2Ops maps each SignalR 2 relay method to the ASP.NET Core clients'
// method of the same name.
var relay2Ops = map[signalr2.RelayOp]signalr.RelayOp{
	signalr2.JoinGroup:        signalr.JoinGroup,
	signalr2.LeaveGroup:       signalr.LeaveGroup,
	signalr2.SendToAll:        signalr.SendToAll,
	signalr2.SendToGroup:      signalr.SendToGroup,
	signalr2.SendToUser:       signalr.SendToUser,
	signalr2.SendToConnection: signalr.SendToConnection,
}

// relay2Command encodes a relay invocation of a SignalR 2 connection: the
// same commands as the ASP.NET Core clients' relay methods (relayCommand).
func relay2Command(hub, connID string, r signalr2.Relay) (fsm.Command, error) {
	op, ok := relay2Ops[r.Op]
	if !ok {
		return nil, fmt.Errorf("%w: unknown relay operation %d", fsm.ErrInvalidCommand, r.Op)
	}
	return relayCommand(hub, connID, signalr.Relay{Op: op, Name: r.Name, Target: r.Target, Arguments: r.Arguments})
}

// relay2Error marks a command's rejection (wherever it was decided) as
// signalr2.ErrRejected, keeping its text.
func relay2Error(err error) error {
	if errors.Is(err, fsm.ErrInvalidCommand) || errors.Is(err, fsm.ErrUnknownCommand) {
		return fmt.Errorf("%w: %w", signalr2.ErrRejected, err)
	}
	return err
}

// errHolderUnknown: a connection's holder has no known address (it left
// the cluster).
var errHolderUnknown = errors.New("the holder's address is not known")

func (h hub2Cluster) Touch(ctx context.Context, holder string, connIDs []string) error {
	info, ok, err := h.n.fsm.Node(holder)
	if err != nil {
		return err
	}
	if !ok || info.HTTPAddr == "" {
		return fmt.Errorf("touch node %s: %w", holder, errHolderUnknown)
	}
	body := signalr2.TouchBody(connIDs)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.n.fwd.url(info.HTTPAddr)+signalr2TouchPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.n.fwd.do(req, body)
	if err != nil {
		return fmt.Errorf("touch node %s: %w", holder, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("touch node %s: %s", holder, resp.Status)
	}
	return nil
}

func (h hub2Cluster) IsUnreachable(err error) bool {
	return peer.IsDialError(err) || errors.Is(err, errHolderUnknown)
}
