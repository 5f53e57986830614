// Package fleet divides one control-plane budget (LANGSMITH_REQUESTS_PER_SECOND and its burst)
// among the worker replicas that share a task queue and an API key, with nothing but Temporal.
//
// Every replica keeps a lease in one small workflow per task queue and key
// (BudgetWorkflow, ID "agent-connections-budget/<task queue>/<credential tag>"): it renews the
// lease every Refresh through an update, which answers with the number of live leases and any
// fleet-wide 429 pause, and the replica paces itself at the budget divided by that number. A
// replica that stops signals that it leaves; one that dies stops renewing and its lease lapses
// after TTL. A 429 a replica gets is signalled to the workflow, and every other replica takes the
// pause with its next renewal. docs/fleet-budget.md has the design and why it beats the others.
package fleet
