"""The spec's Python client (the real-time sync spec's, docs/clients.md), kept exactly as published.

Usage: docs/clients.md ("The spec's client") and docs/protocol.md.
"""

import asyncio
import json
import logging
from typing import Optional, Callable, Dict, Any
from datetime import datetime
import websockets
import uuid

logger = logging.getLogger(__name__)


class PuoMemoWebSocket:
    """WebSocket client for PUO Memo real-time updates"""
    
    def __init__(
        self,
        token: str,
        url: str = "wss://api.puomemo.com/ws",
        reconnect_interval: int = 5
    ):
        self.token = token
        self.url = url
        self.reconnect_interval = reconnect_interval
        self.ws: Optional[websockets.WebSocketClientProtocol] = None
        self.handlers: Dict[str, list[Callable]] = {}
        self._running = False
    
    async def connect(self):
        """Connect to WebSocket server"""
        self._running = True
        
        while self._running:
            try:
                ws_url = f"{self.url}?token={self.token}"
                async with websockets.connect(ws_url) as ws:
                    self.ws = ws
                    logger.info("WebSocket connected")
                    
                    # Subscribe to channels
                    await self.send("subscribe", {
                        "channels": ["memories", "tenant.updates"]
                    })
                    
                    # Message loop
                    async for message in ws:
                        await self._handle_message(message)
                        
            except websockets.exceptions.ConnectionClosed:
                logger.info("WebSocket disconnected")
            except Exception as e:
                logger.error(f"WebSocket error: {e}")
            
            if self._running:
                logger.info(f"Reconnecting in {self.reconnect_interval} seconds...")
                await asyncio.sleep(self.reconnect_interval)
    
    async def disconnect(self):
        """Disconnect from WebSocket server"""
        self._running = False
        if self.ws:
            await self.ws.close()
    
    async def send(self, message_type: str, data: Optional[Dict[str, Any]] = None):
        """Send message to server"""
        if not self.ws:
            logger.warning("WebSocket not connected")
            return
        
        message = {
            "id": str(uuid.uuid4()),
            "type": message_type,
            "timestamp": datetime.utcnow().isoformat(),
            "data": data
        }
        
        await self.ws.send(json.dumps(message))
    
    def on(self, event: str, handler: Callable):
        """Register event handler"""
        if event not in self.handlers:
            self.handlers[event] = []
        self.handlers[event].append(handler)
    
    async def _handle_message(self, raw_message: str):
        """Handle incoming message"""
        try:
            message = json.loads(raw_message)
            message_type = message.get("type")
            data = message.get("data")
            
            # Call registered handlers
            handlers = self.handlers.get(message_type, [])
            for handler in handlers:
                try:
                    if asyncio.iscoroutinefunction(handler):
                        await handler(data)
                    else:
                        handler(data)
                except Exception as e:
                    logger.error(f"Handler error: {e}")
                    
        except json.JSONDecodeError:
            logger.error(f"Failed to parse message: {raw_message}")
