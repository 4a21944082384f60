package access

import (
	"errors"
	"fmt"
	"time"
)

// Relay policies: what a client may do with the relay methods (SignalR's
// JoinGroup, SendToAll…) and with group= on a native stream.
const (
	// RelayOpen lets every client do everything (the empty policy too).
	RelayOpen = "open"
	// RelayRoles lets a client do only what the role claim of its token
	// grants. Any policy other than RelayOpen and "" restricts like this.
	RelayRoles = "roles"
)

// Permissions a client token grants through its role claim (a string or
// an array of strings), named after Azure Web PubSub's webpubsub.* roles.
// They match case-sensitively, as written here. The group-scoped ones
// (backplane.sendToGroup and backplane.joinLeaveGroup) also come as
// "<permission>.<group>", which grants the permission for that group only
// (the group name matches exactly).
const (
	// PermSendToAll allows SendToAll.
	PermSendToAll = "backplane.sendToAll"
	// PermSendToGroup allows SendToGroup to any group;
	// backplane.sendToGroup.<group> to that group.
	PermSendToGroup = "backplane.sendToGroup"
	// PermJoinLeaveGroup allows JoinGroup and LeaveGroup of any group, and
	// following any group on a native stream (group=);
	// backplane.joinLeaveGroup.<group> the same for that group.
	PermJoinLeaveGroup = "backplane.joinLeaveGroup"
	// PermSendToUser allows SendToUser.
	PermSendToUser = "backplane.sendToUser"
	// PermSendToConnection allows SendToConnection.
	PermSendToConnection = "backplane.sendToConnection"
)

// ErrPermissionDenied is wrapped by the error Permissions.Check returns.
var ErrPermissionDenied = errors.New("permission denied")

// Restricted reports whether a relay policy restricts clients to what their
// tokens grant: every policy but RelayOpen and "" does, so an unknown
// policy fails closed.
func Restricted(policy string) bool { return policy != RelayOpen && policy != "" }

// Permissions are the roles a client token grants (its role claim).
type Permissions []string

// groupScoped reports whether perm also exists per group.
func groupScoped(perm string) bool { return perm == PermSendToGroup || perm == PermJoinLeaveGroup }

// Allows reports whether p grants perm: the permission itself, or, for a
// group-scoped permission and a non-empty group, "<perm>.<group>".
func (p Permissions) Allows(perm, group string) bool {
	for _, role := range p {
		if role == perm {
			return true
		}
		if group != "" && groupScoped(perm) && len(role) == len(perm)+1+len(group) &&
			role[:len(perm)] == perm && role[len(perm)] == '.' && role[len(perm)+1:] == group {
			return true
		}
	}
	return false
}

// Check returns nil when p allows perm (for group), else an error wrapping
// ErrPermissionDenied that names the permission the token lacks, e.g.
// "permission denied: the token does not grant backplane.joinLeaveGroup or
// backplane.joinLeaveGroup.admins".
func (p Permissions) Check(perm, group string) error {
	if p.Allows(perm, group) {
		return nil
	}
	if group != "" && groupScoped(perm) {
		return fmt.Errorf("%w: the token does not grant %s or %s.%s", ErrPermissionDenied, perm, perm, group)
	}
	return fmt.Errorf("%w: the token does not grant %s", ErrPermissionDenied, perm)
}

// Grant is what a client's token grants: until when, and which roles.
type Grant struct {
	// Expires is when the token expires: a stream ends then. Zero: never
	// (client tokens are off).
	Expires time.Time
	// Permissions are the token's roles; they matter under RelayRoles.
	Permissions Permissions
}
