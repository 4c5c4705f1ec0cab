// The failover monitor checkpoints a just-promoted primary before it rewinds the old one
// (NodeAdmin.checkpoint): PostgreSQL 15's pg_rewind reads the source's timeline from its
// control file, which is only updated by that checkpoint. pg_checkpoint (PostgreSQL 15) is
// the predefined role for CHECKPOINT; nothing else comes with it.
export default `
GRANT pg_checkpoint TO shortener_monitor;
`;
