"""Dynamic IP restrictions: IIS ``dynamicIpSecurity``, counted across workers and nodes."""
