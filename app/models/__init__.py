"""All models, importable from one place (and seen by Alembic autogenerate)."""

from app.models.catalog import Product
from app.models.coordination import LeaderLease, RateLimitCounter
from app.models.customers import Customer, GatewayCustomer, MethodStatus, SavedPaymentMethod
from app.models.enums import (
    ApiKeyScope,
    DeliveryStatus,
    DisputeStatus,
    FulfillmentStatus,
    OrderStatus,
    PaymentStatus,
    PlanInterval,
    RefundStatus,
    Role,
    SubscriptionStatus,
    WebhookStatus,
)
from app.models.events import AuditEntry, Receipt, WebhookEvent
from app.models.links import PaymentLink, PaymentLinkOrder
from app.models.notifications import MerchantNotification
from app.models.orders import Dispute, Order, OrderItem, Payment, Refund
from app.models.outbox import OutboxEvent, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.models.subscriptions import Plan, SandboxSubscription, Subscription
from app.models.users import ApiKey, IdempotencyKey, SandboxRefund, SandboxSession, User

__all__ = [
    "ApiKey",
    "ApiKeyScope",
    "AuditEntry",
    "Customer",
    "DeliveryStatus",
    "Dispute",
    "DisputeStatus",
    "FulfillmentStatus",
    "GatewayCustomer",
    "IdempotencyKey",
    "LeaderLease",
    "MerchantNotification",
    "MethodStatus",
    "Order",
    "OrderItem",
    "OrderStatus",
    "OutboxEvent",
    "Payment",
    "PaymentLink",
    "PaymentLinkOrder",
    "PaymentStatus",
    "Plan",
    "PlanInterval",
    "Product",
    "RateLimitCounter",
    "Receipt",
    "Refund",
    "RefundStatus",
    "Role",
    "SandboxRefund",
    "SandboxSession",
    "SandboxSubscription",
    "SavedPaymentMethod",
    "Subscription",
    "SubscriptionStatus",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookStatus",
]
