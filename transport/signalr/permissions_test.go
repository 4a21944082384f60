package signalr

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/backplane/backplane/fsm"
	"github.com/backplane/backplane/transport/access"
)

// rolesServer runs the relay under policy and authenticates clients as the
// user named by their "user" query parameter, with the comma-separated
// permissions of their "role" parameter.
func rolesServer(t *testing.T, policy string) *testServer {
	return newTestServer(t, testOptions(func(o *Options) {
		o.RelayPolicy = policy
		o.Authenticate = func(r *http.Request) (Identity, error) {
			id := Identity{UserID: r.URL.Query().Get("user")}
			if roles := r.URL.Query().Get("role"); roles != "" {
				id.Permissions = strings.Split(roles, ",")
			}
			return id, nil
		}
	}))
}

// countProposals counts the commands proposed from now on.
func countProposals(fc *fakeCluster) func() int {
	var mu sync.Mutex
	n := 0
	fc.setHook(func(cmds []fsm.Command) {
		mu.Lock()
		n += len(cmds)
		mu.Unlock()
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// denied wants an error Completion that names the missing permission.
func denied(t *testing.T, what string, r record, want string) {
	t.Helper()
	if r.Error != want || r.Result != nil {
		t.Fatalf("%s: got %s, want the error %q", what, r.raw, want)
	}
}

// Under the roles policy a token that grants none of them gets an error
// Completion for every relay method, naming the missing permission;
// nothing is proposed, and the connection keeps working.
func TestRelayRolesDenyWhatTheTokenDoesNotGrant(t *testing.T) {
	t.Parallel()
	ts := rolesServer(t, access.RelayRoles)
	mallory := ts.openWS("chat", "user=mallory&role=backplane.joinLeaveGroup.room1")
	bob := ts.openWS("chat", "user=bob&role=backplane.joinLeaveGroup")
	ok(t, "bob joins admins", bob.invoke("0", "JoinGroup", "admins"))
	last := ts.cluster.LastMessage()
	proposed := countProposals(ts.cluster)

	denied(t, "JoinGroup admins", mallory.invoke("1", "JoinGroup", "admins"),
		"Failed to invoke 'JoinGroup': permission denied: the token does not grant backplane.joinLeaveGroup or backplane.joinLeaveGroup.admins")
	denied(t, "LeaveGroup admins", mallory.invoke("2", "leaveGroup", "admins"),
		"Failed to invoke 'leaveGroup': permission denied: the token does not grant backplane.joinLeaveGroup or backplane.joinLeaveGroup.admins")
	denied(t, "SendToAll", mallory.invoke("3", "SendToAll", "m", "x"),
		"Failed to invoke 'SendToAll': permission denied: the token does not grant backplane.sendToAll")
	denied(t, "SendToGroup admins", mallory.invoke("4", "SendToGroup", "admins", "m", "x"),
		"Failed to invoke 'SendToGroup': permission denied: the token does not grant backplane.sendToGroup or backplane.sendToGroup.admins")
	denied(t, "SendToUser", mallory.invoke("5", "SendToUser", "bob", "m", "x"),
		"Failed to invoke 'SendToUser': permission denied: the token does not grant backplane.sendToUser")
	denied(t, "SendToConnection", mallory.invoke("6", "SendToConnection", bob.id, "m", "x"),
		"Failed to invoke 'SendToConnection': permission denied: the token does not grant backplane.sendToConnection")
	// Without a group-wide grant, a missing group name grants nothing per
	// group either.
	denied(t, "SendToGroup without arguments", mallory.invoke("7", "SendToGroup"),
		"Failed to invoke 'SendToGroup': permission denied: the token does not grant backplane.sendToGroup")

	mustEqual(t, "commands proposed for denied invocations", proposed(), 0)
	mustEqual(t, "last message index", ts.cluster.LastMessage(), last)
	members, err := ts.cluster.GroupMembers("chat", "admins")
	if err != nil || len(members) != 1 || members[0].Name != bob.id {
		t.Fatalf("members of admins: got %+v (%v), want bob's connection only", members, err)
	}

	// The connection is still open: it receives, and it may do what its
	// token grants.
	ok(t, "JoinGroup room1", mallory.invoke("8", "JoinGroup", "room1"))
	ts.cluster.publish(t, &fsm.Publish{Hub: "chat", Audience: fsm.ToGroups, Names: []string{"room1"}, Target: "toRoom1", Arguments: []byte(`[]`)})
	if r := mallory.next(); r.Type != 1 || r.Target != "toRoom1" {
		t.Fatalf("mallory after the denials: got %s, want the room1 message", r.raw)
	}
	if r := bob.invoke("9", "SendToAll", "x"); r.Error == "" {
		t.Fatalf("bob's SendToAll: got %s, want an error (his token grants only joinLeaveGroup)", r.raw)
	}
}

// A per-group permission grants that group only, matched exactly.
func TestRelayRolesPerGroup(t *testing.T) {
	t.Parallel()
	ts := rolesServer(t, access.RelayRoles)
	c := ts.openWS("chat", "user=carol&role=backplane.joinLeaveGroup.room1,backplane.sendToGroup.room1")
	ok(t, "JoinGroup room1", c.invoke("1", "JoinGroup", "room1"))
	ok(t, "SendToGroup room1", c.invoke("2", "SendToGroup", "room1", "toRoom1"))
	if r := c.next(); r.Target != "toRoom1" {
		t.Fatalf("carol: got %s, want her room1 message", r.raw)
	}
	ok(t, "LeaveGroup room1", c.invoke("3", "LeaveGroup", "room1"))
	for i, tc := range []struct{ method, group string }{
		{"JoinGroup", "room2"},
		{"JoinGroup", "Room1"},
		{"JoinGroup", "room10"},
		{"LeaveGroup", "room2"},
		{"SendToGroup", "room2"},
	} {
		r := c.invoke(string(rune('a'+i)), tc.method, tc.group, "m")
		if !strings.Contains(r.Error, "permission denied") || !strings.Contains(r.Error, "."+tc.group) {
			t.Errorf("%s %s: got %s, want permission denied naming the group", tc.method, tc.group, r.raw)
		}
	}
	if r := c.invoke("x", "SendToAll", "m"); !strings.Contains(r.Error, "backplane.sendToAll") {
		t.Errorf("SendToAll: got %s, want permission denied naming backplane.sendToAll", r.raw)
	}
}

// Tokens that grant the hub-wide permissions may do everything; argument
// errors are reported as before.
func TestRelayRolesGrantingEverything(t *testing.T) {
	t.Parallel()
	ts := rolesServer(t, access.RelayRoles)
	all := "backplane.sendToAll,backplane.sendToGroup,backplane.joinLeaveGroup,backplane.sendToUser,backplane.sendToConnection"
	a := ts.openWS("chat", "user=alice&role="+all)
	b := ts.openWS("chat", "user=bob&role="+all)
	ok(t, "JoinGroup", a.invoke("1", "JoinGroup", "g"))
	ok(t, "SendToGroup", b.invoke("2", "SendToGroup", "g", "toGroup"))
	ok(t, "SendToUser", b.invoke("3", "SendToUser", "alice", "toAlice"))
	ok(t, "SendToConnection", b.invoke("4", "SendToConnection", a.id, "toConn"))
	ok(t, "SendToAll", b.invoke("5", "SendToAll", "toAll"))
	ok(t, "LeaveGroup", a.invoke("6", "LeaveGroup", "g"))
	var got []string
	for range 4 {
		got = append(got, a.next().Target)
	}
	mustEqual(t, "alice's deliveries", strings.Join(got, ","), "toGroup,toAlice,toConn,toAll")
	if r := a.invoke("7", "SendToGroup"); !strings.Contains(r.Error, "group name is missing") {
		t.Fatalf("SendToGroup without arguments: got %s, want the argument error", r.raw)
	}
}

// The open policy (and no policy) lets a token without roles do
// everything.
func TestRelayOpenPolicyAllowsEverything(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{access.RelayOpen, ""} {
		ts := rolesServer(t, policy)
		m := ts.openWS("chat", "user=mallory")
		ok(t, policy+" JoinGroup", m.invoke("1", "JoinGroup", "admins"))
		ok(t, policy+" SendToGroup", m.invoke("2", "SendToGroup", "admins", "g"))
		ok(t, policy+" SendToUser", m.invoke("3", "SendToUser", "bob", "u"))
		ok(t, policy+" SendToConnection", m.invoke("4", "SendToConnection", m.id, "c"))
		ok(t, policy+" SendToAll", m.invoke("5", "SendToAll", "a"))
		ok(t, policy+" LeaveGroup", m.invoke("6", "LeaveGroup", "admins"))
	}
}

// A stateful connection's denied invocation completes with the error
// through the log, and no message is committed.
func TestRelayRolesStatefulDenied(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, statefulOptions(func(o *Options) {
		o.RelayPolicy = access.RelayRoles
		o.Authenticate = func(*http.Request) (Identity, error) { return Identity{}, nil }
	}))
	c := ts.openStateful("chat")
	last := ts.cluster.LastMessage()
	c.write(invocation("1", "SendToAll", "m"))
	if r := c.nextMsg(); r.Type != 3 || r.Error != "Failed to invoke 'SendToAll': permission denied: the token does not grant backplane.sendToAll" {
		t.Fatalf("stateful SendToAll: got %s, want the permission error", r.raw)
	}
	mustEqual(t, "last message index", ts.cluster.LastMessage(), last)
}

// A stateful connection taken over by another node gets the permissions of
// the token it resumed with.
func TestRelayRolesAfterTakeover(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var grant access.Permissions
	opts := statefulOptions(func(o *Options) {
		o.RelayPolicy = access.RelayRoles
		o.Authenticate = func(*http.Request) (Identity, error) {
			mu.Lock()
			defer mu.Unlock()
			return Identity{Permissions: grant}, nil
		}
	})
	base, a, b := startPair(t, opts)
	base.setNodeURL("a", closedURL(t))

	c := a.openStateful("chat")
	c.drop()
	a.waitDetached(c.token)
	mu.Lock()
	grant = access.Permissions{access.PermSendToAll}
	mu.Unlock()
	r := b.resume("chat", c)
	r.wantSequence()
	if node, _ := base.holder(t, "chat", c.id); node != "b" {
		t.Fatalf("holder after the resume: got %q, want b (a takeover)", node)
	}
	r.write(sequence(1) + invocation("1", "SendToAll", "afterTakeover"))
	if got := r.nextMsg(); got.Type != 3 || got.InvocationID != "1" || got.Error != "" {
		t.Fatalf("SendToAll after the takeover: got %s, want success (the resume token grants it)", got.raw)
	}
}
