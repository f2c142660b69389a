//! Node database, range operators, modules, nodescripts, provisioning daemon and node agent.
