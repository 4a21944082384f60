package raftlog

import "github.com/hashicorp/raft"

// noPipeline is the Raft transport without pipelined replication.
//
// hashicorp/raft's pipeline can wedge for good: when a follower fails to
// append (a full disk, any write error), the leader's sender for it can
// block in netPipeline.AppendEntries with no decoder left to free it, so
// the follower never gets another entry (not even after it can write
// again), the leader's shutdown hangs, and heartbeats keep the follower
// loyal to it. Without the pipeline raft replicates with synchronous
// AppendEntries calls, each bounded by the transport's I/O timeout, and a
// failed append is simply retried. Raft already packs up to
// MaxAppendEntries entries into each call, and Backplane packs many
// messages into each entry, so little throughput is lost
// (docs/performance.md).
type noPipeline struct {
	*raft.NetworkTransport
}

// AppendEntriesPipeline tells raft to replicate without a pipeline.
func (noPipeline) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}
