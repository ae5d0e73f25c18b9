"""What a resident is told when their message could not be handled now (no Rasa imports:
the cluster's nginx config embeds it too, bot/ops/cluster.py)."""

MSG_BUSY = "系统暂时繁忙，您的消息没有处理成功，请稍后重发。"
