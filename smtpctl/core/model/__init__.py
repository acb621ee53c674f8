"""What every subject of the core shares: records, errors, the pure rules,
money and the clock. Nothing here touches the store."""
